"""The explanation checks on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import torch

from workbench.explain import checks as C
from workbench.models import build_model


def test_randomized_copy_redraws_every_weight_and_leaves_the_model_alone() -> None:
    from tests.helpers.cases import tiny_config

    torch.manual_seed(0)
    model = build_model(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = C.randomized_copy(model, seed=1)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])  # the original is untouched
    params = dict(rand.named_parameters())
    changed = [n for n, p in model.named_parameters() if p.numel() > 1 and not torch.equal(p, params[n])]
    multi = [n for n, p in model.named_parameters() if p.numel() > 1 and p.std() > 0]
    assert set(multi) <= set(changed)  # every non-constant weight tensor was redrawn


def test_nodule_mask_is_the_dilated_sphere_at_the_patch_centre() -> None:
    m = C.nodule_mask(32, 1.25, diameter_mm=10.0, dilate_mm=5.0)  # radius 10 mm = 8 voxels
    assert m[16, 16, 16] and m[16, 16, 24] and not m[16, 16, 25] and not m[0, 0, 0]
    assert abs(m.sum() - 4 / 3 * np.pi * 8**3) / (4 / 3 * np.pi * 8**3) < 0.05


def test_top_share_counts_the_top_voxels_inside_the_mask() -> None:
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[:5] = True
    a = np.zeros((10, 10, 10))
    a[0, 0, :6] = [5, -6, 7, 8, 9, 10]  # the top 10 of 1000 voxels are 1% ; 6 of them inside
    a[9, 9, :4] = [4.5, 4.6, -4.7, 4.8]
    assert C.top_share_inside(a, mask, top=0.01) == 0.6


def test_phrase_words_are_found_after_number_normalisation() -> None:
    from workbench.models.tokenizer import load_tokenizer, normalize_note

    tok = load_tokenizer()
    clean = normalize_note("HPI: a sixty-five year old woman, former smoker, quit 2010. No family history of cancer.")
    flags, found = C.phrase_word_flags(clean, ["sixty-five year old", "former smoker", "not in the note"], tok, 320)
    tokens = tok.convert_ids_to_tokens(tok(clean, add_special_tokens=False)["input_ids"])
    words = []
    for t in tokens:
        if t.startswith("##") and words:
            words[-1] += t[2:]
        else:
            words.append(t)
    assert found == 2 and len(flags) == len(words)
    assert [w for w, f in zip(words, flags, strict=True) if f] == ["65", "year", "old", "former", "smoker"]
    assert C.note_ranks_high(np.where(flags, 1.0, 0.1), flags) is True
    assert C.note_ranks_high(np.where(flags, 0.05, 0.1), flags) is False


def test_deletion_of_the_attributed_inputs_drops_a_linear_score_faster_than_random() -> None:
    w = torch.linspace(0, 1, 100)

    def score(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1) @ w / w.sum()

    x = torch.ones(1, 100)
    attributed = C.deletion_curve(score, x, np.argsort(-(w * x[0]).numpy()), 0.0)
    rnd = C.deletion_curve(score, x, np.random.default_rng(0).permutation(100), 0.0)
    assert abs(attributed[0] - 1) < 1e-6 and abs(rnd[0] - 1) < 1e-6 and abs(attributed[-1]) < 1e-6 and abs(rnd[-1]) < 1e-6
    assert C.curve_auc(attributed) < C.curve_auc(rnd) - 0.1
    # groups: removing the first word removes both of its tokens
    groups = np.array([0, 0, 1, 2])
    curve = C.deletion_curve(lambda t: t.float().sum(1), torch.tensor([[3, 4, 5, 6]]), np.array([0, 1, 2]), 0,
                             fractions=(0.0, 1 / 3, 1.0), groups=groups)
    assert curve.tolist() == [18.0, 11.0, 0.0]
