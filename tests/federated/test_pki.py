"""Certificates and node keys (``federated/pki.py``), read back with the ``cryptography`` and ``ssl`` parsers: the
server certificate chains to the CA, names every host asked plus 127.0.0.1, and is refused for another name; node
keys are ECDSA P-256 in OpenSSH format, private files are 0600, and nothing is overwritten without --force."""

from __future__ import annotations

import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federated.pki import check_certificate, init_pki, node_key
from workbench.cli import main
from workbench.errors import WorkbenchError


def test_the_server_certificate_names_its_hosts_and_loopback_and_chains_to_the_ca(tmp_path: Path) -> None:
    done = init_pki(tmp_path / "pki", ["coord.hospital.example", "10.1.2.3"])
    cert = x509.load_pem_x509_certificate(done.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coord.hospital.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3"),
                                                       ipaddress.ip_address("127.0.0.1")]
    ca = x509.load_pem_x509_certificate(done.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises unless signed by this CA
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 396 <= (done.server_not_after - cert.not_valid_before_utc).days <= 398
    ssl.create_default_context(cafile=str(done.ca_cert))  # the CA file loads as a trust store
    for private in ("ca.key", "superlink.key"):
        assert stat.S_IMODE((tmp_path / "pki" / private).stat().st_mode) == 0o600
    ok = check_certificate(done.server_cert, done.ca_cert, "127.0.0.1")
    assert ok.problem is None and ok.chain_ok and ok.days_left >= 396
    assert "not valid for elsewhere.example" in check_certificate(done.server_cert, done.ca_cert,
                                                                  "elsewhere.example").problem
    other = init_pki(tmp_path / "other", ["coord.hospital.example"])
    wrong = check_certificate(done.server_cert, other.ca_cert)
    assert not wrong.chain_ok and "not signed by the CA" in wrong.problem


def test_node_keys_are_ecdsa_openssh_and_nothing_is_overwritten(tmp_path: Path) -> None:
    key = node_key(tmp_path / "node", "hospital_a")
    private = serialization.load_ssh_private_key(key.private_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    public = serialization.load_ssh_public_key(key.public_key.read_bytes().split(b" hospital_a")[0])
    assert public.public_numbers() == private.public_key().public_numbers()
    assert key.public_line.startswith("ecdsa-sha2-nistp256 ") and key.public_line.endswith(" hospital_a")
    assert stat.S_IMODE(key.private_key.stat().st_mode) == 0o600
    before = key.private_key.read_bytes()
    with pytest.raises(WorkbenchError, match="already has a key"):
        node_key(tmp_path / "node", "hospital_a")
    assert key.private_key.read_bytes() == before
    assert node_key(tmp_path / "node", "hospital_a", force=True).private_key.read_bytes() != before
    init_pki(tmp_path / "pki", [])
    with pytest.raises(WorkbenchError, match="a CA already exists"):
        init_pki(tmp_path / "pki", [])
    with pytest.raises(WorkbenchError, match="--host"):
        init_pki(tmp_path / "bad", ["http://x"])


def test_the_cli_prints_what_each_person_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init", str(tmp_path / "pki"), "--host", "coord.example"]) == 0
    out = capsys.readouterr().out
    assert "coord.example, 127.0.0.1" in out and "valid until" in out and "never copy it" in out
    assert main(["pki", "node", str(tmp_path / "n"), "--name", "hospital_b"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == (tmp_path / "n" / "node.key.pub").read_text().strip()
    assert main(["pki", "node", str(tmp_path / "n"), "--name", "hospital_b"]) == 2  # refused, not overwritten


def test_node_audit_verify_passes_on_a_clean_log_and_fails_after_one_edit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from federated.audit import append

    log = tmp_path / "state" / "hospital_a" / "audit.jsonl"
    log.parent.mkdir(parents=True)
    for r in range(1, 4):
        append(log, {"round": r, "sent_digest": f"{r:064x}", "update_norm": 0.5 + r, "epsilon": 0.1 * r})
    site = tmp_path / "site"
    site.mkdir()
    assert main(["node", "init", str(tmp_path), "--site-dir", str(site), "--name", "hospital_a"]) == 0
    capsys.readouterr()
    assert main(["node", "status", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["node"] == "hospital_a" and status["epsilon_spent"] == 0.0 and status["last_audit_entry"]["round"] == 3
    assert main(["node", "audit", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 entries, hash chain intact" in out and '"round": 3' in out
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"update_norm": 2.5', '"update_norm": 0.5')  # someone makes round 2 look smaller
    log.write_text("\n".join(lines) + "\n")
    assert main(["node", "audit", str(tmp_path), "--verify", str(log)]) == 1
    assert "audit chain broken at line 2" in capsys.readouterr().out
    log.write_text("not json\n")
    assert main(["node", "audit", str(tmp_path), "--verify", str(log)]) == 1
    assert main(["node", "audit", str(tmp_path / "nowhere")]) == 2
