"""The neighbour index: each example's neighbourhood among the training points.

Paper 1, App. B.2 and B.5. The training images are flattened and projected
on the principal components that explain `pca_variance` of the training
variance (`nbflows.neighbours.pca`), or mapped by a feature hook: the paper
uses a beta-VAE's latent means for CelebA, which `config.features = WORKDIR`
(a VAE's training run, `nbflows.neighbours.vae_features`) selects instead of
the default "pca". Then either

  * kind="knn": the k nearest training points of every example, exactly
    (`nbflows.neighbours.knn`), optionally of the same class and, for
    training points, leaving the point itself out; `knn_backend="faiss"`
    finds the same neighbours with faiss instead of JAX (not a setting of
    the index, which is the same either way); or
  * kind="kmeans": k-means clusters of the training features
    (`nbflows.neighbours.kmeans`); an example's neighbourhood is the
    `num_prototypes` prototypes of its nearest centre, so there are only
    `num_clusters` neighbourhoods and eq. 4 can be summed exactly. These
    neighbourhoods are fixed sets: `same_class` and `exclude_self` do not
    apply.

Neighbours of validation and test examples are always training points.

The index is saved as a versioned `.npz` holding the neighbours, their
squared distances in feature space, the PCA basis (or the centres and
prototypes), the settings it was built with and a SHA-256 hash of each
split's images and labels. Loading checks all of them: a file made for other
data or other settings raises `IndexMismatchError` naming what differs,
rather than being reused, and a truncated or damaged file raises
`UnreadableIndexError`; both messages name the file and the remedy
(`rebuild=True`, on the command line `--rebuild_index`, overwrites it).

Example:
  >>> import tempfile
  >>> from nbflows.data import sources
  >>> from configs import default
  >>> splits = sources.load("digits")
  >>> config = default.get_config().neighbours
  >>> index = build_or_load(splits, config, tempfile.mkdtemp(), progress=False)
  >>> index.neighbours["test"].shape == (len(splits.test.labels), config.k)
  True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from nbflows.data import sources
from nbflows.neighbours import kmeans as kmeans_lib
from nbflows.neighbours import knn as knn_lib
from nbflows.neighbours import pca as pca_lib
from nbflows import workdir_errors

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
KINDS = ("knn", "kmeans")
FeatureHook = Callable[[np.ndarray], np.ndarray]
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "nbflows", "neighbours")


REBUILD_REMEDY = ("rebuild it: --rebuild_index on the command line "
                  "(python -m train.main, train.evaluate), rebuild=True in "
                  "build_or_load, or delete the file")


class IndexMismatchError(workdir_errors.WorkdirFileError, ValueError):
  """A saved neighbour index does not match the data or the settings asked for."""


class UnreadableIndexError(IndexMismatchError):
  """A saved neighbour index cannot be read (truncated or damaged)."""


@dataclasses.dataclass(frozen=True)
class NeighbourIndex:
  """Neighbourhoods of every example of a dataset's splits.

  Attributes:
    kind: "knn" or "kmeans".
    k: neighbours per example (num_prototypes for "kmeans").
    neighbours: split name -> int32 [N_split, k] indices into the training
      split, nearest first.
    distances: split name -> float32 [N_split, k] squared Euclidean distances
      in feature space.
    settings: the settings the index was built with (see `settings_of`).
    data_hashes: split name -> SHA-256 of that split's images and labels.
    pca: the PCA basis, or None with a feature hook.
    centres: "kmeans": float32 [C, F] cluster centres; otherwise None.
    prototypes: "kmeans": int32 [C, k] each cluster's prototypes (training
      indices, nearest the centre first); otherwise None.
    clusters: "kmeans": split name -> int32 [N_split] nearest centre of each
      example; otherwise empty.
  """
  kind: str
  k: int
  neighbours: Mapping[str, np.ndarray]
  distances: Mapping[str, np.ndarray]
  settings: Mapping[str, Any]
  data_hashes: Mapping[str, str]
  pca: Optional[pca_lib.PCA] = None
  centres: Optional[np.ndarray] = None
  prototypes: Optional[np.ndarray] = None
  clusters: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _check_kind(config: Any) -> None:
  if config.kind not in KINDS:
    raise ValueError(f"config.neighbours.kind={config.kind!r}; expected one "
                     f"of {KINDS}")


def settings_of(splits: sources.Splits, config: Any,
                features_name: Optional[str] = None) -> Dict[str, Any]:
  """The settings an index depends on, from `config.neighbours`.

  Args:
    splits: the data (its dataset name is recorded).
    config: `config.neighbours` (fields k, same_class, exclude_self,
      pca_variance, kind, num_clusters, num_prototypes, search).
    features_name: the name of the feature hook's embedding, or None for PCA
      (`features_of` gives it for `config.features`).

  Returns:
    A JSON-serialisable dict; two indices with equal settings and data are
    interchangeable.

  Raises:
    ValueError: for an unknown `config.kind`.
  """
  _check_kind(config)
  settings = {"dataset": splits.info.name, "kind": config.kind,
              "features": features_name or "pca"}
  if features_name is None:
    settings["pca_variance"] = float(config.pca_variance)
  if config.kind == "knn":
    settings.update(k=int(config.k), same_class=bool(config.same_class),
                    exclude_self=bool(config.exclude_self))
    # Recorded only when not exact, so exact indices saved before the
    # option existed still load.
    search = config.get("search", "exact")
    if search != "exact":
      settings["search"] = search
  else:
    settings.update(num_clusters=int(config.num_clusters),
                    num_prototypes=int(config.num_prototypes))
  return settings


def neighbourhood_size(config: Any) -> int:
  """k, the neighbours per example an index built from `config` holds.

  `config.k` for "knn", `config.num_prototypes` for "kmeans" (App. B.5).

  Example:
    >>> from configs import default
    >>> neighbourhood_size(default.get_config().neighbours)
    5
  """
  _check_kind(config)
  return int(config.num_prototypes if config.kind == "kmeans" else config.k)


def data_hashes(splits: sources.Splits) -> Dict[str, str]:
  """SHA-256 of each split's images and labels (shapes and dtypes included)."""
  hashes = {}
  for name in SPLITS:
    split = getattr(splits, name)
    digest = hashlib.sha256()
    for array in (split.images, split.labels):
      array = np.ascontiguousarray(array)
      digest.update(f"{array.dtype.str}{array.shape}".encode())
      digest.update(memoryview(array).cast("B"))
    hashes[name] = digest.hexdigest()
  return hashes


def features_of(splits: sources.Splits, config: Any,
                features: Optional[FeatureHook] = None,
                features_name: Optional[str] = None
                ) -> Tuple[Optional[FeatureHook], Optional[str]]:
  """The feature hook and its name: the ones given, else `config.features`'s.

  Args:
    splits: the dataset (its image shape must be the VAE's).
    config: `config.neighbours`; `features` is "pca" (the default, also when
      the field is absent) or the workdir of a trained VAE.
    features: a hook given explicitly; it wins over `config.features`.
    features_name: its name.

  Returns:
    (None, None) for PCA, else (hook, name) (see
    `nbflows.neighbours.vae_features.encoder_means`).

  Raises:
    ValueError: if the VAE workdir is missing, is not a VAE's or was trained
      on images of another shape.
  """
  if features is not None or features_name is not None:
    return features, features_name
  choice = config.get("features", "pca")
  if choice == "pca":
    return None, None
  # Imported here: it loads checkpoints, which needs the training code.
  from nbflows.neighbours import vae_features  # pylint: disable=g-import-not-at-top
  return vae_features.encoder_means(choice, splits.info.event_shape)


def build(splits: sources.Splits, config: Any, *,
          features: Optional[FeatureHook] = None,
          features_name: Optional[str] = None,
          progress: bool = True) -> NeighbourIndex:
  """Computes the neighbour index of all splits (App. B.2, B.5).

  Args:
    splits: the dataset.
    config: `config.neighbours`.
    features: optional hook images [n, ...] -> features [n, F] used instead
      of PCA (e.g. a beta-VAE encoder's means); None: `config.features`
      decides (see `features_of`).
    features_name: a name for the hook's embedding (e.g. "beta_vae_1.5@step
      20000"), recorded in the settings; required with `features`.
    progress: show progress bars.

  Returns:
    The `NeighbourIndex`.

  Raises:
    ValueError: for inconsistent arguments, or if some example has fewer
      than k eligible training neighbours (the message names both numbers).
  """
  if (features is None) != (features_name is None):
    raise ValueError("features and features_name go together: give both to "
                     "use a feature hook, or neither for PCA")
  features, features_name = features_of(splits, config, features,
                                        features_name)
  settings = settings_of(splits, config, features_name)
  pca = None
  if features is None:
    pca = pca_lib.fit(splits.train.images, config.pca_variance)
    features = lambda images: pca_lib.transform(pca, images)
  feats = {name: np.asarray(features(getattr(splits, name).images), np.float32)
           for name in SPLITS}
  for name, f in feats.items():
    n = len(getattr(splits, name).labels)
    if f.ndim != 2 or len(f) != n:
      raise ValueError(f"features of the {name} split have shape {f.shape}; "
                       f"expected [{n}, num_features]")
  common = dict(settings=settings, data_hashes=data_hashes(splits), pca=pca)
  if config.kind == "kmeans":
    return _build_kmeans(splits, feats, config, common, progress)
  return _build_knn(splits, feats, config, common, progress)


def _build_knn(splits, feats, config, common, progress) -> NeighbourIndex:
  labels = {name: getattr(splits, name).labels for name in SPLITS}
  same_class = bool(config.same_class)
  neighbours, distances = {}, {}
  for name in SPLITS:
    queries = None if name == "train" else feats[name]
    neighbours[name], distances[name] = knn_lib.knn(
        feats["train"], int(config.k), queries=queries,
        database_labels=labels["train"] if same_class else None,
        query_labels=labels[name] if same_class else None,
        exclude_self=bool(config.exclude_self), progress=progress,
        search=config.get("search", "exact"),
        backend=config.get("knn_backend", "jax"))
  return NeighbourIndex(kind="knn", k=int(config.k), neighbours=neighbours,
                        distances=distances, **common)


def _build_kmeans(splits, feats, config, common, progress) -> NeighbourIndex:
  del splits
  fitted = kmeans_lib.fit(feats["train"], int(config.num_clusters),
                          int(config.num_prototypes), progress=progress)
  clusters = {"train": fitted.assignments}
  for name in SPLITS[1:]:
    clusters[name] = kmeans_lib.assign(feats[name], fitted.centres)
  neighbours, distances = {}, {}
  for name in SPLITS:
    neighbours[name] = fitted.prototypes[clusters[name]]
    distances[name] = np.stack([
        np.sum((feats[name] - feats["train"][neighbours[name][:, j]]) ** 2,
               axis=1) for j in range(neighbours[name].shape[1])], axis=1)
  return NeighbourIndex(kind="kmeans", k=int(config.num_prototypes),
                        neighbours=neighbours, distances=distances,
                        centres=fitted.centres, prototypes=fitted.prototypes,
                        clusters=clusters, **common)


def default_path(splits: sources.Splits, config: Any, cache_dir: Optional[str],
                 features_name: Optional[str] = None) -> str:
  """Where `build_or_load` keeps an index: one file per dataset and settings.

  The name spells out the settings (e.g. "mnist-knn-k5-same_class-
  exclude_self-pca0.99.npz"), so indices for different settings live side by
  side; the data hashes inside the file catch changed data.
  """
  s = settings_of(splits, config, features_name)
  parts = [s["dataset"], s["kind"]]
  if s["kind"] == "knn":
    parts += [f"k{s['k']}"] + [flag for flag in ("same_class", "exclude_self")
                               if s[flag]]
  else:
    parts += [f"c{s['num_clusters']}", f"m{s['num_prototypes']}"]
  if features_name is None:
    parts.append(f"pca{s['pca_variance']:g}")
  else:
    parts.append(hashlib.sha256(features_name.encode()).hexdigest()[:12])
  directory = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
  return os.path.join(directory, "-".join(parts) + ".npz")


def save(index: NeighbourIndex, path: str) -> None:
  """Writes `index` to `path` (.npz) atomically."""
  arrays = {"format_version": np.array(FORMAT_VERSION),
            "kind": np.array(index.kind), "k": np.array(index.k),
            "settings": np.array(json.dumps(dict(index.settings),
                                            sort_keys=True)),
            "data_hashes": np.array(json.dumps(dict(index.data_hashes),
                                               sort_keys=True))}
  for name in SPLITS:
    arrays[f"neighbours_{name}"] = index.neighbours[name]
    arrays[f"distances_{name}"] = index.distances[name]
    if name in index.clusters:
      arrays[f"clusters_{name}"] = index.clusters[name]
  if index.pca is not None:
    arrays.update(pca_mean=index.pca.mean, pca_components=index.pca.components,
                  pca_variances=index.pca.variances,
                  pca_total_variance=np.array(index.pca.total_variance))
  if index.centres is not None:
    arrays.update(centres=index.centres, prototypes=index.prototypes)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz.tmp",
                                   delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)


def load(path: str, splits: sources.Splits, config: Any,
         features_name: Optional[str] = None) -> NeighbourIndex:
  """Reads an index and checks it was made for these data and settings.

  Args:
    path: the .npz file.
    splits: the data the index must describe.
    config: `config.neighbours` the index must have been built with.
    features_name: the feature hook's name, None for PCA.

  Returns:
    The `NeighbourIndex`.

  Raises:
    IndexMismatchError: if the file's format version, settings or data hashes
      differ from the expected ones; the message names each difference and
      how to rebuild it.
    UnreadableIndexError: if the file is not a complete index (truncated,
      damaged); the message names the file and how to rebuild it.
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = dict(f)
    version = int(arrays["format_version"])
  except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as e:
    raise UnreadableIndexError(
        f"neighbour index {path} cannot be read ({type(e).__name__}: {e}); "
        f"the file is truncated or damaged (a save or a copy cut short). "
        f"It is a cache: {REBUILD_REMEDY}") from e
  if version != FORMAT_VERSION:
    raise IndexMismatchError(
        f"neighbour index {path} has format version {version}; this nbflows "
        f"reads version {FORMAT_VERSION}: {REBUILD_REMEDY}")
  stored = json.loads(str(arrays["settings"]))
  hashes = json.loads(str(arrays["data_hashes"]))
  expected = settings_of(splits, config, features_name)
  differences = [f"{key}: file has {stored.get(key)!r}, expected "
                 f"{expected.get(key)!r}"
                 for key in sorted(set(stored) | set(expected))
                 if stored.get(key) != expected.get(key)]
  current = data_hashes(splits)
  differences += [f"data of the {name} split: file has hash "
                  f"{hashes.get(name, '')[:12]}, these data "
                  f"{current[name][:12]}"
                  for name in SPLITS if hashes.get(name) != current[name]]
  if differences:
    raise IndexMismatchError(
        f"neighbour index {path} does not match: " + "; ".join(differences)
        + f". Point to the file of these data and settings, or "
        f"{REBUILD_REMEDY}")
  pca = None
  if "pca_mean" in arrays:
    pca = pca_lib.PCA(arrays["pca_mean"], arrays["pca_components"],
                      arrays["pca_variances"],
                      float(arrays["pca_total_variance"]))
  return NeighbourIndex(
      kind=str(arrays["kind"]), k=int(arrays["k"]),
      neighbours={n: arrays[f"neighbours_{n}"] for n in SPLITS},
      distances={n: arrays[f"distances_{n}"] for n in SPLITS},
      settings=stored, data_hashes=hashes, pca=pca,
      centres=arrays.get("centres"), prototypes=arrays.get("prototypes"),
      clusters={n: arrays[f"clusters_{n}"] for n in SPLITS
                if f"clusters_{n}" in arrays})


def build_or_load(splits: sources.Splits, config: Any,
                  cache_dir: Optional[str] = None, *,
                  path: Optional[str] = None,
                  features: Optional[FeatureHook] = None,
                  features_name: Optional[str] = None,
                  rebuild: bool = False,
                  progress: bool = True) -> NeighbourIndex:
  """Loads the saved index for these data and settings, or builds and saves it.

  Args:
    splits: the dataset.
    config: `config.neighbours`.
    cache_dir: directory of the saved indices (None: ~/.cache/nbflows/
      neighbours); the file name is `default_path`'s.
    path: an explicit file instead.
    features: optional feature hook used instead of PCA; None:
      `config.features` decides (see `features_of`).
    features_name: the hook's name; required with `features`.
    rebuild: build and overwrite even if a file exists.
    progress: show progress bars while building.

  Returns:
    The `NeighbourIndex`.

  Raises:
    IndexMismatchError: if the file exists but was made for other data or
      settings (and `rebuild` is False).
    ValueError: for a `config.features` that is neither "pca" nor a VAE's
      workdir of these images.
  """
  features, features_name = features_of(splits, config, features,
                                        features_name)
  path = path or default_path(splits, config, cache_dir, features_name)
  if os.path.exists(path) and not rebuild:
    return load(path, splits, config, features_name)
  index = build(splits, config, features=features, features_name=features_name,
                progress=progress)
  save(index, path)
  return index
