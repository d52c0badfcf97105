"""What a hospital node does, in plain torch (no flwr import): build the model, load its own cases, train, evaluate.

The Flower apps (``client_app``, ``server_app``) are thin wrappers over these functions, so the same code is
tested without a federation and runs unchanged under ``flwr run .``, ``workbench federate`` and a real
SuperNode. Training is the one local trainer of ``workbench.train`` (plain) or its private mode (DP-SGD).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from federated.config import FedConfig
from federated.ledger import PrivacyLedger
from workbench.atomic import atomic_write
from workbench.data.cache import PreprocessCache, default_cache_dir
from workbench.errors import WorkbenchError
from workbench.metrics import auroc
from workbench.models.ct_encoder import CTEncoderConfig
from workbench.models.model import ModelConfig, NoduleRiskModel, build_model, load_model, trainable_parameters
from workbench.models.text_encoder import TextEncoderConfig
from workbench.runtime.encode import (
    EncodedCases,
    ct_reader_frozen,
    encode_cases,
    note_reader_frozen,
    with_ct_states,
    with_note_states,
)
from workbench.runtime.run import cases_of, site_dirs_of
from workbench.train.dp_subsets import FUSION_PREFIXES, freeze_for_dp


def model_config(fed: FedConfig) -> ModelConfig:
    text = TextEncoderConfig(path=fed.text_encoder, freeze=True) if fed.text_encoder else TextEncoderConfig()
    ct = CTEncoderConfig(path=fed.ct_encoder, freeze=True) if fed.ct_encoder else CTEncoderConfig()
    return ModelConfig(modalities=tuple(m.strip() for m in fed.modalities.split(",") if m.strip()), ct=ct, text=text)


def build(fed: FedConfig) -> NoduleRiskModel:
    """The node's (and the server's) model: the same seed gives every participant the same starting weights."""
    torch.manual_seed(fed.seed)
    if fed.init_model:
        model = load_model(fed.init_model)
        if fed.text_encoder and model.text_encoder is not None:
            for p in [*model.text_encoder.encoder.parameters(), *model.text_encoder.value_proj.parameters()]:
                p.requires_grad_(False)
        return model
    return build_model(model_config(fed))


def exchanged_names(model: NoduleRiskModel, mode: str) -> list[str]:
    """State-dict keys that travel between server and nodes in ``mode`` (all | trainable | fusion)."""
    params = dict(model.named_parameters())
    names = list(model.state_dict().keys())
    if mode == "all":
        return names
    if mode == "trainable":
        return [n for n in names if n in params and params[n].requires_grad]
    if mode == "fusion":
        return [n for n in names if n.startswith(FUSION_PREFIXES)]
    raise WorkbenchError(f"federate mode {mode!r}: expected all, trainable or fusion")


def state_of(model: NoduleRiskModel, names: list[str]) -> OrderedDict[str, torch.Tensor]:
    sd = model.state_dict()
    return OrderedDict((n, sd[n].detach().cpu().clone()) for n in names)


def load_state(model: NoduleRiskModel, state: dict[str, torch.Tensor]) -> None:
    missing = set(state) - set(model.state_dict())
    if missing:
        raise WorkbenchError(f"received weights the model does not have: {sorted(missing)[:3]}...")
    model.load_state_dict(state, strict=False)


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return int(sum(t.numel() * t.element_size() for t in state.values()))


def state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def node_site(fed: FedConfig, node_config: dict[str, Any]) -> Path:
    """A node's site folder: ``site-dir`` in its node config (a hospital's SuperNode), else the cohort's
    ``partition-id``-th site (simulation: one SuperNode per site)."""
    if node_config.get("site-dir"):
        return Path(str(node_config["site-dir"]))
    if not fed.cohort:
        raise WorkbenchError("federated config: no cohort and no site-dir in the node config; a node needs its data")
    sites = site_dirs_of(fed.cohort)
    pid = int(node_config.get("partition-id", 0))
    if pid >= len(sites):
        raise WorkbenchError(f"node partition {pid}: the cohort {fed.cohort} has only {len(sites)} sites")
    return sites[pid]


def state_dir(fed: FedConfig, node_config: dict[str, Any], site: Path) -> Path:
    root = node_config.get("state-dir") or fed.state_dir or str(Path(default_cache_dir()).parent / "nodes")
    return Path(str(root)) / site.name


_DATA: dict[tuple[str, str, str], EncodedCases] = {}
_STATES: dict[tuple[str, str, str], list[tuple[torch.Tensor, EncodedCases]]] = {}
READER_RTOL = 1e-5  # FedAvg's weighted mean of identical frozen weights can move them by an ulp; nothing more


def frozen_reader_weights(model: NoduleRiskModel) -> torch.Tensor:
    """The frozen readers' weights, flattened (empty when neither reader is frozen): what their states depend on."""
    tensors = []
    if note_reader_frozen(model) and model.text_encoder is not None:
        tensors += [p for p in model.text_encoder.parameters() if not p.requires_grad]
    if ct_reader_frozen(model) and model.ct_encoder is not None:
        tensors += list(model.ct_encoder.frozen_parameters())
    if not tensors:
        return torch.zeros(0)
    return torch.cat([t.detach().float().flatten().cpu() for t in tensors])


def frozen_reader_digest(model: NoduleRiskModel) -> str:
    """A digest of the frozen readers' exact weights ('' when neither reader is frozen)."""
    w = frozen_reader_weights(model)
    return hashlib.sha256(w.numpy().tobytes()).hexdigest()[:16] if w.numel() else ""


def same_readers(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same frozen readers: equal up to the rounding that averaging identical weights introduces."""
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=READER_RTOL, atol=1e-8))


def node_data(fed: FedConfig, site: Path, model: NoduleRiskModel, split: str) -> EncodedCases:
    """The node's own cases of ``split``, encoded once per process (and, with ``encoded-dir``, taken from the
    benchmark's pooled encoding instead of reading DICOM again), with the frozen readers' states.

    The readers are frozen, so their states are the same in every round: they are computed once per process
    (and, in a benchmark's simulation, kept beside the pooled encoding for the next run) for these readers, and
    computed again only for other reader weights. Rounds of FedAvg send the frozen weights back averaged, which
    can move them by an ulp; that is the same reader (``same_readers``)."""
    weights = frozen_reader_weights(model)
    key = (str(site), split, f"{fed.encoded_dir}|{','.join(model.modalities)}|{fed.text_encoder}")
    for ref, data in _STATES.get(key, []):
        if same_readers(ref, weights):
            return data
    data = _kept_states(fed, site, split, model, weights)
    if data is None:
        data = _encoded_node_data(fed, site, model, split)
        if note_reader_frozen(model):
            data = with_note_states(model, data)
        if ct_reader_frozen(model):  # the patches were read once; the states are all training needs of them
            data = with_ct_states(model, data)
            data = EncodedCases(data.case_ids, data.sites, {k: v for k, v in data.tensors.items()
                                                            if k not in ("ct_patch", "ct_context")}, list(data.refused))
        folder = _states_folder(fed, split, model)
        if folder is not None and weights.numel():
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{site.name}_{frozen_reader_digest(model)}"
            data.save(folder / f"{stem}.pt")
            with atomic_write(folder / f"{stem}.readers.pt") as tmp:
                torch.save(weights, tmp)
    _STATES[key] = [*_STATES.get(key, [])[-1:], (weights, data)]  # at most two reader sets per split in memory
    return data


def _states_folder(fed: FedConfig, split: str, model: NoduleRiskModel) -> Path | None:
    """Where a simulated node keeps its states between runs: beside the benchmark's pooled encoding
    (``encoded-dir``), in a folder named by the split, the pooled file's size and time and the modalities, so
    another encoding never reuses them; each file names its site and holds its readers' weights beside it. A real
    node (no ``encoded-dir``) keeps them in memory only."""
    if not fed.encoded_dir:
        return None
    pooled = Path(fed.encoded_dir) / f"encoded_{split}.pt"
    if not pooled.is_file():
        return None
    st = pooled.stat()
    tag = hashlib.sha256(f"{st.st_size}|{st.st_mtime_ns}|{','.join(model.modalities)}".encode()).hexdigest()[:12]
    return Path(fed.encoded_dir) / "node_states" / f"{split}_{tag}"


def _kept_states(fed: FedConfig, site: Path, split: str, model: NoduleRiskModel,
                 weights: torch.Tensor) -> EncodedCases | None:
    folder = _states_folder(fed, split, model)
    if folder is None or not weights.numel() or not folder.is_dir():
        return None
    for readers in sorted(folder.glob(f"{site.name}_*.readers.pt")):
        if same_readers(torch.load(readers, weights_only=True), weights):
            states = readers.with_name(readers.name.replace(".readers.pt", ".pt"))
            if states.is_file():
                return EncodedCases.load(states)
    return None


def _encoded_node_data(fed: FedConfig, site: Path, model: NoduleRiskModel, split: str) -> EncodedCases:
    key = (str(site), split, f"{fed.encoded_dir}|{','.join(model.modalities)}|{fed.text_encoder}")
    if key in _DATA:
        return _DATA[key]
    if fed.encoded_dir:
        pooled = EncodedCases.load(Path(fed.encoded_dir) / f"encoded_{split}.pt")
        data = pooled.subset(np.flatnonzero(np.array(pooled.sites) == site.name))
    else:
        assert model.tokenizer is not None
        data = encode_cases(cases_of([site], [split]), model.tokenizer, cache=PreprocessCache(default_cache_dir()),
                            modalities=model.modalities, progress=False, max_length=model.config.text.max_length)
    _DATA[key] = data
    return data


def train_plain(model: NoduleRiskModel, data: EncodedCases, fed: FedConfig, server_round: int,
                proximal_mu: float = 0.0, device: str = "cpu") -> dict[str, float]:
    """``local-epochs`` passes of the shared trainer (no early stopping: the server owns the rounds). ``device``:
    where a benchmark simulating many nodes trains them (a node trains on its CPU)."""
    from workbench.train.trainer import TrainConfig, train_model

    cfg = TrainConfig(epochs=fed.local_epochs, batch_size=fed.batch_size, lr=fed.lr, patience=0, schedule="constant",
                      seed=fed.seed * 1000 + server_round, progress=False, proximal_mu=proximal_mu, device=device,
                      aux_weight=fed.aux_weight)
    result = train_model(model, data, None, cfg)
    return {"train_loss": float(result.history[-1]["loss"]) if result.history else float("nan"),
            "samples_per_s": float(result.samples_per_s)}


def dp_trainable(model: NoduleRiskModel, fed: FedConfig) -> int:
    """Freeze what DP-SGD leaves alone (``dp-train = fusion``: both encoders); the count of what it trains."""
    freeze_for_dp(model, fed.dp_train)
    return trainable_parameters(model)


def dp_seed(fed: FedConfig, site: str, server_round: int) -> int | None:
    """The DP generator's seed for a release: None (OS entropy: private) unless ``dp-seeded`` asks for the
    replayable test mode, which derives it from the config's seed, the round and the site (not private)."""
    if not fed.dp_seeded:
        return None
    return fed.seed * 1000 + server_round + 7919 * (zlib.crc32(site.encode()) % 100_000)


def train_dp(model: NoduleRiskModel, data: EncodedCases, fed: FedConfig, ledger: PrivacyLedger, run_id: str,
             server_round: int) -> dict[str, float]:
    """One round of DP-SGD whose noise the ledger plans; every release is recorded before anything is sent.

    The first round of a run also releases the node's case count once (Gaussian, ``dp-count-noise``; in the
    ledger): it is the weight FedAvg gives the node and, times the sampling rate, the public divisor of the
    node's noised gradient sum. The class weight is the public prior's. What the node sends back is the
    ``federated.egress.DP_EGRESS`` table's keys, nothing else."""
    from workbench.train.private import PrivacyConfig, train_private
    from workbench.train.trainer import TrainConfig

    site = ledger.node
    count = ledger.count_release(run_id, len(data), fed.dp_count_noise, seed=dp_seed(fed, site, 0))
    rounds_left = fed.num_server_rounds - server_round + 1
    sigma = ledger.plan_noise(run_id, fed.dp_epsilon, rounds_left, fed.dp_sample_rate, fed.dp_steps)
    n_params = dp_trainable(model, fed)
    privacy = PrivacyConfig(noise_multiplier=sigma, max_grad_norm=fed.dp_max_grad_norm,
                            sample_rate=fed.dp_sample_rate, steps=fed.dp_steps, delta=fed.dp_delta, lr=fed.dp_lr,
                            optimizer=fed.dp_optimizer, engine=fed.dp_engine, seed=dp_seed(fed, site, server_round),
                            class_prior=fed.dp_class_prior, expected_batch=fed.dp_sample_rate * max(1.0, count))
    result = train_private(model, data, privacy, TrainConfig(seed=fed.seed * 1000 + server_round, progress=False,
                                                                   aux_weight=fed.aux_weight))
    ledger.record(run_id, server_round, sigma, result.sample_rate, result.steps, fed.dp_max_grad_norm,
                  secure_randomness=result.secure_randomness, engine=result.engine)
    return {"num-examples": max(1.0, count), "noise_multiplier": sigma, "steps": float(result.steps),
            "epsilon_run": ledger.epsilon(run_id), "epsilon_total": ledger.epsilon(),
            "dp_trainable_params": float(n_params), "secure_randomness": float(result.secure_randomness)}


def allowed_splits(fed: FedConfig, node_config: dict[str, Any]) -> list[str]:
    """Splits this node evaluates on request: its own ``eval-splits`` node config, else the run's."""
    from federated.config import split_list

    return split_list(str(node_config.get("eval-splits") or fed.eval_splits))


def log_local_metrics(state: Path, row: dict[str, Any]) -> None:
    """A node's own record of how the global model does on its data: kept at the node, never sent under DP."""
    from workbench.jsonout import jsonable

    state.mkdir(parents=True, exist_ok=True)
    with open(state / "local_metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(row)) + "\n")


def evaluate(model: NoduleRiskModel, data: EncodedCases) -> dict[str, float]:
    """AUROC and mean BCE of the current model on ``data`` (raw logits: calibration is the server's job)."""
    from workbench.runtime.inference import predict_logits

    if len(data) == 0:
        return {"auroc": float("nan"), "loss": float("nan")}
    logits = predict_logits(model, data)["logits"]
    y = data.labels
    loss = float(np.mean(np.logaddexp(0.0, logits) - y * logits))
    return {"auroc": auroc(y, logits) if 0 < y.mean() < 1 else float("nan"), "loss": loss}
