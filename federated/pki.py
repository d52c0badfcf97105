"""Certificates and node keys for a federation on Flower's deployment engine (SuperLink + SuperNodes).

Two commands, for two people:
- the **coordinator** runs ``workbench pki init DIR --host NAME [--host ...]``: a private certificate authority
  (``ca.crt``, ``ca.key``) and the SuperLink's server certificate (``superlink.crt``, ``superlink.key``) signed by
  it, with a subject-alternative name for every host given **plus 127.0.0.1** (Flower's SuperExec connects to its
  own SuperLink there; without that SAN the TLS handshake fails with a hostname mismatch). ``ca.crt`` is what every
  hospital needs; ``ca.key`` never leaves the coordinator.
- a **hospital's IT team** runs ``workbench pki node DIR --name SITE``: the node's key pair for SuperNode
  authentication. Flower signs with an **ECDSA (P-256) key in OpenSSH format** (Ed25519 is refused); the private
  key stays at the node (mode 0600), the one-line public key goes to the coordinator, who enrols it
  (``flwr supernode register``).

TLS here is server-side (the SuperNode checks the SuperLink against the CA); node identity is the signed key, which
is why node authentication requires TLS. Every file is written atomically; an existing CA or node key is never
overwritten (re-provisioning is a deliberate ``--force``), because replacing it silently would lock every enrolled
node out. Validity periods are printed and returned so a doctor check can warn before expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from workbench.atomic import atomic_write, write_bytes
from workbench.errors import WorkbenchError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PkiConfig:
    ca_days: int = 3650  # the CA outlives the server certificates it signs
    server_days: int = 397  # the CA/Browser Forum maximum for a server certificate: rotate yearly
    organisation: str = "nodule-workbench federation"


@dataclass(frozen=True)
class Issued:
    """What ``init`` wrote: the paths and each certificate's validity (UTC)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    hosts: tuple[str, ...]
    ca_not_after: dt.datetime
    server_not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write_private(path: Path, data: bytes) -> None:
    """A private key, atomically and readable by its owner only from the first byte (no world-readable window)."""
    with atomic_write(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _san(host: str):  # noqa: ANN202 - a cryptography GeneralName
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        if not host or any(c.isspace() or c in "/:@" for c in host):
            raise WorkbenchError(f"--host {host!r}: expected a DNS name or an IP address") from None
        return x509.DNSName(host)


def init_pki(folder: str | Path, hosts: list[str], *, force: bool = False, config: PkiConfig = PkiConfig()) -> Issued:
    """The CA and the SuperLink's certificate for ``hosts`` (+ 127.0.0.1) in ``folder`` (module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(folder)
    if (out / "ca.key").exists() and not force:
        raise WorkbenchError(f"{out}: a CA already exists (ca.key); replacing it would lock out every enrolled node. "
                             "Use --force to re-provision on purpose")
    names = list(dict.fromkeys([*(h.strip() for h in hosts if h.strip()), LOOPBACK]))
    sans = [_san(h) for h in names]
    out.mkdir(parents=True, exist_ok=True)
    now = _now()
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organisation)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, "nodule-workbench federation CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=config.ca_days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=config.server_days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    pkcs8 = dict(encoding=pem, format=serialization.PrivateFormat.PKCS8,
                 encryption_algorithm=serialization.NoEncryption())
    _write_private(out / "ca.key", ca_key.private_bytes(**pkcs8))
    write_bytes(out / "ca.crt", ca_cert.public_bytes(pem))
    _write_private(out / "superlink.key", key.private_bytes(**pkcs8))
    write_bytes(out / "superlink.crt", cert.public_bytes(pem))
    return Issued(out / "ca.crt", out / "superlink.crt", out / "superlink.key", tuple(names),
                  ca_cert.not_valid_after_utc, cert.not_valid_after_utc)


@dataclass(frozen=True)
class NodeKey:
    private_key: Path
    public_key: Path
    public_line: str  # "ecdsa-sha2-nistp256 AAAA... SITE": what the coordinator enrols


def node_key(folder: str | Path, name: str, *, force: bool = False) -> NodeKey:
    """An ECDSA P-256 key pair in OpenSSH format for SuperNode authentication (``node.key``, ``node.key.pub``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not name or any(c.isspace() for c in name):
        raise WorkbenchError(f"--name {name!r}: expected the site's name without spaces")
    out = Path(folder)
    if (out / "node.key").exists() and not force:
        raise WorkbenchError(f"{out}: this node already has a key (node.key); a new one must be enrolled again by the "
                             "coordinator. Use --force to replace it on purpose")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {name}"
    _write_private(out / "node.key", private)
    write_bytes(out / "node.key.pub", (line + "\n").encode())
    return NodeKey(out / "node.key", out / "node.key.pub", line)


@dataclass(frozen=True)
class CertCheck:
    subject: str
    sans: tuple[str, ...]
    not_after: dt.datetime
    days_left: int
    chain_ok: bool
    problem: str | None  # None: valid for every host asked; else what is wrong, in words


def check_certificate(cert_path: str | Path, ca_path: str | Path, host: str | None = None) -> CertCheck:
    """Is ``cert_path`` signed by ``ca_path``, within its validity, and (given ``host``) valid for that host?"""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        ca = x509.load_pem_x509_certificate(Path(ca_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{cert_path} / {ca_path}: not a readable PEM certificate ({exc})") from None
    sans: tuple[str, ...] = ()
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple([*ext.get_values_for_type(x509.DNSName),
                      *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))])
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(ca)  # issuer name and signature
        chain_ok = True
    except (ValueError, TypeError, InvalidSignature):
        chain_ok = False
    now = _now()
    days = (cert.not_valid_after_utc - now).days
    problem = None
    if not chain_ok:
        problem = f"{cert_path} is not signed by the CA {ca_path}: use the coordinator's ca.crt"
    elif now < cert.not_valid_before_utc or days < 0:
        problem = f"{cert_path} is not valid now (valid {cert.not_valid_before_utc} to {cert.not_valid_after_utc})"
    elif host is not None and host not in sans:
        problem = (f"{cert_path} is not valid for {host} (its names: {', '.join(sans)}); re-issue it with "
                   f"`workbench pki init DIR --host {host} --force`")
    return CertCheck(cert.subject.rfc4514_string(), sans, cert.not_valid_after_utc, days, chain_ok, problem)


def tls_peer_certificate(host: str, port: int, ca: str | Path, timeout_s: float = 5.0) -> bytes:
    """DER bytes of the certificate ``host:port`` presents, once it verifies against ``ca`` for ``host``.

    Raises ``ssl.SSLCertVerificationError`` (wrong CA, wrong name, expired), other ``ssl.SSLError`` or ``OSError``
    (nothing listening, not TLS): the callers tell these apart."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, port), timeout=timeout_s) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        return s.getpeercert(binary_form=True) or b""


__all__ = ["CertCheck", "Issued", "NodeKey", "PkiConfig", "check_certificate", "init_pki", "node_key", "tls_peer_certificate"]
