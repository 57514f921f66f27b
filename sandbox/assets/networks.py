"""The feature networks of ``evaluator=inception``: which files, where they are looked for, and
where they are downloaded from.

==============  =====================================  =========================================
network         file                                   metrics (Data-Juicer's names)
==============  =====================================  =========================================
inception       ``pt_inception-2015-12-05-6726825d``   fid50k, kid50k, is50k
                ``.pth`` (pytorch-fid's port of the
                TensorFlow FID Inception, a state
                dict loaded into ``inception_nets``)
i3d             ``i3d_torchscript.pt`` (StyleGAN-V's   fvd2048_16f, fvd2048_128f,
                TorchScript I3D, Kinetics-400)         fvd2048_128f_subsample8f, kvd2048_16f,
                                                       prv2048_3n_16f
c3d_ucf101      ``c3d_ucf101.pt`` (TorchScript C3D     isv2048_ucf
                fine-tuned on UCF-101)
vgg16           ``vgg16.pt`` (StyleGAN2-ADA's          pr50k_3n
                TorchScript VGG16)
==============  =====================================  =========================================

Each is found in this order: the explicit path the config gives (``evaluator.<network>_path``,
used as is); Data-Juicer's caches: its metrics code downloads through StyleGAN's ``open_url``,
which keeps ``<md5 of the URL>_<name>`` in ``$DNNLIB_CACHE_DIR/downloads`` (default
``~/.cache/dnnlib/downloads``), and its model folders (``sandbox.assets.sources``) under the file
name; torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``, where pytorch-fid keeps
its weights); the sandbox's cache (``<cache>/models``); then a download into that cache from the
URL Data-Juicer's code uses, unless ``SANDBOX_OFFLINE=1``.

Checksums: none of these files is published with one. pytorch-fid's file name carries the first
8 hex digits of its sha256 (torch hub's ``check_hash`` convention), and a download is checked
against them; the others are checked against what the server announces (length, Content-MD5) and
their sha256 is recorded in the manifest (``python -m sandbox.assets list``).
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sandbox.assets import sources
from sandbox.assets.download import DownloadError, download
from sandbox.assets.resolve import (AssetMissing, Resolved, _record, downloads_allowed,
                                    models_dir, what_was_tried)


@dataclass(frozen=True)
class Network:
    key: str
    filename: str
    url: str  # the URL Data-Juicer's metrics code downloads (its cache is keyed by it)
    what: str
    metrics: tuple[str, ...]
    sha256: str | None = None  # not published for any of them (see the module's docstring)
    sha256_prefix: str | None = None  # torch hub's hash-in-the-file-name convention

    @property
    def arg(self) -> str:
        return f"evaluator.{self.key}_path"


NETWORKS: dict[str, Network] = {n.key: n for n in (
    Network("inception", "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "the Inception-v3 of TensorFlow's FID, pytorch-fid's weights",
            ("fid50k", "kid50k", "is50k"), sha256_prefix="6726825d"),
    Network("i3d", "i3d_torchscript.pt",
            "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
            "the Kinetics-400 I3D of FVD, StyleGAN-V's TorchScript",
            ("fvd2048_16f", "fvd2048_128f", "fvd2048_128f_subsample8f", "kvd2048_16f",
             "prv2048_3n_16f")),
    Network("c3d_ucf101", "c3d_ucf101.pt",
            "https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1",
            "C3D fine-tuned on UCF-101, StyleGAN-V's TorchScript of TGAN2's", ("isv2048_ucf",)),
    Network("vgg16", "vgg16.pt",
            "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
            "VGG16, StyleGAN2-ADA's TorchScript", ("pr50k_3n",)),
)}


def dnnlib_downloads_dir() -> Path:
    """Where StyleGAN's ``open_url`` (Data-Juicer's metrics code) keeps downloads."""
    if os.environ.get("DNNLIB_CACHE_DIR"):
        return Path(os.environ["DNNLIB_CACHE_DIR"]).expanduser() / "downloads"
    return Path.home() / ".cache" / "dnnlib" / "downloads"


def torch_hub_checkpoints_dir() -> Path:
    base = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "torch")
    return Path(base).expanduser() / "hub" / "checkpoints"


def _dnnlib_hit(net: Network) -> Path | None:
    md5 = hashlib.md5(net.url.encode("utf-8")).hexdigest()
    hits = glob.glob(str(dnnlib_downloads_dir() / f"{md5}_*"))
    return Path(hits[0]) if len(hits) == 1 else None


def where_to_copy(net: Network) -> str:
    return str(models_dir() / net.filename)


def resolve_network(key: str, explicit: str | None = None, allow_download: bool | None = None,
                    progress: bool = True, errors: list[str] | None = None) -> Resolved:
    """Where network ``key``'s file is (see the module's docstring); ``AssetMissing`` if
    nowhere."""
    net = NETWORKS[key]
    errors = [] if errors is None else errors
    found = find_network(net, explicit)
    allow = downloads_allowed() if allow_download is None else allow_download
    if found is None and explicit is None and allow:
        dest = models_dir() / net.filename
        try:
            digest = download(net.url, dest, sha256=net.sha256, progress=progress)
        except DownloadError as e:
            errors.append(str(e))
        else:
            if net.sha256_prefix and not digest.startswith(net.sha256_prefix):
                dest.unlink(missing_ok=True)
                errors.append(f"{net.url}: sha256 {digest} does not start with "
                              f"{net.sha256_prefix} (the hash in the file's name); deleted")
            else:
                _record(dest, net.url, digest)
                found = Resolved(dest, "download")
    if found is None:
        raise AssetMissing(missing_networks([(net, explicit)], errors))
    return found


def find_network(net: Network, explicit: str | None) -> Resolved | None:
    """Where ``net`` already is on this machine (no download), or None."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        return Resolved(p, f"explicit path ({net.arg})") if p.is_file() else None
    hit = _dnnlib_hit(net)
    if hit is not None:
        return Resolved(hit, "Data-Juicer's metrics cache (dnnlib)")
    for d, label in sources.dj_models_dirs():
        if (d / net.filename).is_file():
            return Resolved(d / net.filename, label)
    hub = torch_hub_checkpoints_dir() / net.filename
    if hub.is_file():
        return Resolved(hub, "torch hub cache")
    own = models_dir() / net.filename
    if own.is_file():
        return Resolved(own, "sandbox cache")
    return None


def missing_networks(missing: list[tuple[Network, str | None]],
                     errors: list[str] | None = None, source: str = "evaluator=inception") -> str:
    """One paragraph naming every missing network file, the metrics that need it, where to put
    it and the fetch command."""
    items = []
    for net, explicit in missing:
        if explicit is not None:
            items.append(f"{net.filename}: {net.arg}={explicit} does not exist (needed by "
                         f"{', '.join(net.metrics)})")
        else:
            items.append(f"{net.filename} ({net.what}; needed by {', '.join(net.metrics)}) -> "
                         f"copy to {where_to_copy(net)}, or give {net.arg}=PATH")
    n = len(missing)
    tried = what_was_tried(errors)
    keys = " ".join(f"--network {net.key}" for net, _ in missing)
    return (f"{source} needs {n} feature network file{'s' if n > 1 else ''} that "
            f"{'are' if n > 1 else 'is'} not on this machine: {'; '.join(items)}.{tried} "
            f"Nothing was computed. On a machine that is online, run `python -m sandbox.assets "
            f"fetch {keys}` and copy the file{'s' if n > 1 else ''} into the folder named above; "
            f"Data-Juicer's own cache ({dnnlib_downloads_dir()}) is read as is.")


def check_networks(needs: dict[str, str | None], allow_download: bool | None = None,
                   progress: bool = True, source: str = "evaluator=inception") -> dict[str,
                                                                                      Resolved]:
    """Resolve every ``{network key: explicit path or None}``; one ``AssetMissing`` naming all
    that cannot be had."""
    found, missing, errors = {}, [], []
    for key, explicit in needs.items():
        try:
            found[key] = resolve_network(key, explicit, allow_download, progress, errors)
        except AssetMissing:
            missing.append((NETWORKS[key], explicit))
    if missing:
        raise AssetMissing(missing_networks(missing, errors, source))
    return found
