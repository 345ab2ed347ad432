"""Lineage: where an output came from, step by step, linked by digest.

A featurebridge output records what made it in its manifest.json: a
predictions directory names its model (``model_link``: path, the sha256 of
the model's manifest.json, the serving export used), a model names its
analyze output (``analyzed``: path and manifest sha256), an analyze output
names its input files and the spec (each with its sha256), which analyzer
path ran (``analyzer``: one_pass, tft or custom) and the source digest of a
user's preprocessing_fn module. `trace` follows those links from any of
them back to the input files, and with ``verify=True`` recomputes every
digest (each manifest's sealed ``outputs``, the upstream manifests', the
inputs', the spec's and the preprocessing_fn module's) and says what changed.

An upstream directory is found by its recorded path; if it is not there, the
directories next to that path and next to the step that names it are
searched for a manifest.json with the recorded sha256 (the digest, not the
path, identifies it). A `featurebridge run` output's summary.json names its
three stages the same way.

Reads JSON and hashes files: no TensorFlow, no Beam.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from featurebridge.transforms import layout, provenance
from featurebridge.transforms.errors import ArtifactError

__all__ = ["Finding", "Lineage", "Step", "trace"]

# manifest "job" -> the step's name in a lineage.
_KINDS = {"predict": "predictions", "train": "model", "analyze": "analyzed"}
_RERUN = {
    "predictions": "`featurebridge predict`",
    "model": "`featurebridge train`",
    "analyzed": "`featurebridge analyze`",
}
_NOUN = {"predictions": "predictions", "model": "model", "analyzed": "analyze output"}
# The versions worth showing per step (the manifest keeps them all).
_SHOWN_VERSIONS = ("featurebridge", "python", "apache-beam", "tensorflow", "tensorflow-transform")


@dataclasses.dataclass
class Finding:
    """One thing that does not hold.

    Attributes:
      step: the step it was found at (predictions, model, analyzed, run).
      kind: changed, missing, damaged (a failure), or added, moved, note (said,
        not a failure: what was recorded still holds).
      what: output file, input file, upstream manifest, spec, preprocessing_fn...
      path: the file or directory.
      expected: the recorded digest ("sha256:..."), None if none was recorded.
      found: the digest found now, None if the file is not there.
      message: a sentence for people: what happened and what to do.
    """

    step: str
    kind: str
    what: str
    path: str
    expected: Optional[str]
    found: Optional[str]
    message: str

    @property
    def failed(self) -> bool:
        return self.kind in ("changed", "missing", "damaged")


@dataclasses.dataclass
class Step:
    """One artifact in the chain, as its manifest describes it.

    Attributes:
      kind: predictions, model or analyzed.
      path: its directory.
      manifest: its manifest.json, parsed.
      manifest_sha256: the sha256 of that file.
      link: how the step below named this one: {"path", "manifest_sha256"
        (as recorded; None when only a path was recorded), "found_by" ("path"
        or "digest"), "holds" (True/False; None when nothing to compare)}.
        None for the step the walk started at.
    """

    kind: str
    path: str
    manifest: Dict[str, Any]
    manifest_sha256: str
    link: Optional[Dict[str, Any]] = None

    def upstream(self) -> Optional[Tuple[str, Optional[str], Optional[str]]]:
        """(kind, recorded path, recorded manifest sha256) of the step it was
        made from; None for an analyze output (its inputs are files)."""
        m = self.manifest
        if self.kind == "predictions":
            link = m.get("model_link") if isinstance(m.get("model_link"), Mapping) else {}
            path = link.get("path") or m.get("model")
            return "model", (str(path) if path else None), link.get("manifest_sha256")
        if self.kind == "model":
            link = m.get("analyzed") if isinstance(m.get("analyzed"), Mapping) else {}
            return "analyzed", (str(link["path"]) if link.get("path") else None), link.get("manifest_sha256")
        return None

    def summary(self) -> Dict[str, Any]:
        """What a person (or --json) wants to see of the step."""
        m = self.manifest
        versions = m.get("versions") if isinstance(m.get("versions"), Mapping) else {}
        out: Dict[str, Any] = {
            "kind": self.kind,
            "path": self.path,
            "job": m.get("job"),
            "manifest_sha256": self.manifest_sha256,
            "started": m.get("started"),
            "finished": m.get("finished"),
            "elapsed_seconds": elapsed_seconds(m.get("started"), m.get("finished")),
            "runner": m.get("runner") or ("in process (TensorFlow)" if self.kind == "model" else None),
            "engine": m.get("engine"),
            "versions": {k: versions[k] for k in _SHOWN_VERSIONS if k in versions},
            "rows": m.get("rows") if self.kind != "model" else (m.get("metrics") or {}).get("rows"),
            "inputs": [
                {"path": i.get("path"), "bytes": i.get("bytes"), "sha256": i.get("sha256")}
                for i in m.get("inputs") or () if isinstance(i, Mapping)
            ],
            "outputs": len(m.get("outputs") or {}),
            "link": self.link,
        }
        if isinstance(out["rows"], Mapping):
            out["rows"] = {k: v for k, v in out["rows"].items() if k != "per_file"}
        if self.kind == "analyzed":
            out.update(
                analyzer=m.get("analyzer"),
                input_format=m.get("input_format"),
                spec={"digest": m.get("spec_digest"), "source": m.get("spec_source")},
                preprocessing_fn=m.get("preprocessing_fn"),
                preprocessing_fn_source=m.get("preprocessing_fn_source"),
            )
        elif self.kind == "model":
            options = m.get("options") if isinstance(m.get("options"), Mapping) else {}
            out.update(model_type=options.get("model"), epochs=options.get("epochs"), spec_digest=m.get("spec_digest"))
        elif self.kind == "predictions":
            link = m.get("model_link") if isinstance(m.get("model_link"), Mapping) else {}
            out["serving"] = link.get("serving")
        return out


@dataclasses.dataclass
class Lineage:
    """The chain from where the walk started back to the input files.

    Attributes:
      start: the path the walk started from.
      steps: predictions, model, analyzed (those reached), downstream first.
      run: a `featurebridge run` output's summary.json, when the walk started there.
      findings: what does not hold (and notes), in the order found.
      verified: whether every digest was recomputed (``trace(verify=True)``).
      checked: how many digests were recomputed, by what.
    """

    start: str
    steps: List[Step]
    run: Optional[Dict[str, Any]] = None
    findings: List[Finding] = dataclasses.field(default_factory=list)
    verified: bool = False
    checked: Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing changed, is missing or is damaged."""
        return not any(f.failed for f in self.findings)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "start": self.start,
            "ok": self.ok,
            "verified": self.verified,
            "checked": dict(self.checked),
            "run": self.run,
            "steps": [s.summary() for s in self.steps],
            "findings": [dict(dataclasses.asdict(f), failed=f.failed) for f in self.findings],
        }


def elapsed_seconds(started: Any, finished: Any) -> Optional[float]:
    """Seconds between two ISO-8601 times; None when either is absent or unreadable."""
    try:
        a = datetime.datetime.fromisoformat(str(started))
        b = datetime.datetime.fromisoformat(str(finished))
        return round((b - a).total_seconds(), 1)
    except (TypeError, ValueError):
        return None


def _sha(digest: Optional[str]) -> Optional[str]:
    """"sha256:HEX" from a bare hex digest (manifests record both forms)."""
    if not digest:
        return None
    return digest if str(digest).startswith("sha256:") else f"sha256:{digest}"


def _sha256(path: str) -> Optional[str]:
    try:
        return provenance.file_digest(path)["sha256"]
    except OSError:
        return None


def _read_manifest(directory: str) -> Dict[str, Any]:
    """A step's manifest.json, checked to be one featurebridge wrote.

    Raises:
      ArtifactError: missing, not JSON, or without a known "job"; names the file.
    """
    path = os.path.join(directory, layout.MANIFEST)
    fix = "Restore the directory from a copy, or re-run the job that wrote it."
    manifest = layout.read_json_artifact(path, fix=fix)
    if manifest.get("job") not in _KINDS:
        raise ArtifactError(
            f"{path} has job {manifest.get('job')!r}, not one of {sorted(_KINDS)}: it is damaged or not a "
            f"featurebridge manifest. {fix}"
        )
    return manifest


def _open_step(directory: str, link: Optional[Dict[str, Any]] = None) -> Step:
    manifest = _read_manifest(directory)
    return Step(
        kind=_KINDS[manifest["job"]],
        path=os.path.abspath(directory),
        manifest=manifest,
        manifest_sha256=provenance.file_digest(os.path.join(directory, layout.MANIFEST))["sha256"],
        link=link,
    )


def _manifest_dir(path: str, levels: int = 3) -> Optional[str]:
    """`path` or the nearest folder above it (MODEL/serving/<version> -> MODEL)
    that holds a manifest.json."""
    candidate = os.path.abspath(path)
    for _ in range(levels):
        if os.path.isfile(os.path.join(candidate, layout.MANIFEST)):
            return candidate
        candidate = os.path.dirname(candidate)
    return None


def _start(path: str) -> Tuple[Optional[Dict[str, Any]], str, Optional[str]]:
    """(run summary or None, the first step's directory, the predictions
    file the walk started from or None).

    Raises:
      ArtifactError: `path` is not a featurebridge output, or its summary.json
        is damaged.
    """
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise ArtifactError(f"{path} does not exist. Pass a `run` output, a predictions directory or file, a model or an analyze output.")
    if os.path.isfile(path):
        name = os.path.basename(path)
        if name == layout.SUMMARY_JSON:
            path = os.path.dirname(path)
        elif name == layout.MANIFEST:
            return None, os.path.dirname(path), None
        else:
            directory = _manifest_dir(os.path.dirname(path), levels=1)
            if directory is None:
                raise ArtifactError(
                    f"{path} is a file, but its folder has no {layout.MANIFEST}: it is not in a featurebridge "
                    "output. Pass a predictions file where `featurebridge predict` wrote it, or its directory."
                )
            return None, directory, path
    summary_path = os.path.join(path, layout.SUMMARY_JSON)
    if os.path.isfile(summary_path) and not os.path.isfile(os.path.join(path, layout.MANIFEST)):
        summary = layout.read_json_artifact(summary_path, fix="Re-run `featurebridge run` to rewrite it.")
        stages = summary.get("stages") if isinstance(summary.get("stages"), Mapping) else {}
        first = (stages.get("predict") or {}).get("path") if isinstance(stages.get("predict"), Mapping) else None
        # The stage next to summary.json first: the run output may have moved as a whole.
        local = os.path.join(path, layout.PREDICTIONS_DIR)
        return summary, (local if os.path.isdir(local) or not first else str(first)), None
    directory = _manifest_dir(path)
    if directory is None:
        raise ArtifactError(
            f"{path} is not a featurebridge output: no {layout.MANIFEST} there or above it, and no "
            f"{layout.SUMMARY_JSON}. Pass a `run` output, a predictions directory or file, a model or an analyze output."
        )
    return None, directory, None


def _find_by_digest(sha: str, places: List[str]) -> Optional[str]:
    """A directory in or next to `places` whose manifest.json has sha256 `sha`."""
    seen = set()
    for place in places:
        if not place or not os.path.isdir(place):
            continue
        try:
            names = sorted(os.listdir(place))
        except OSError:
            continue
        for name in [""] + names:
            candidate = os.path.join(place, name) if name else place
            manifest = os.path.join(candidate, layout.MANIFEST)
            if candidate in seen or not os.path.isfile(manifest):
                continue
            seen.add(candidate)
            if _sha256(manifest) == sha:
                return candidate
    return None


class _Walk:
    """One `trace`: the steps found and the findings, as it goes."""

    def __init__(self, start: str, verify: bool):
        self.lineage = Lineage(start=start, steps=[], verified=verify)
        self.verify = verify

    def add(self, step: str, kind: str, what: str, path: str, expected=None, found=None, message: str = "") -> None:
        self.lineage.findings.append(Finding(step, kind, what, path, _sha(expected), _sha(found), message))

    def count(self, what: str, n: int = 1) -> None:
        self.lineage.checked[what] = self.lineage.checked.get(what, 0) + n

    # -- links ---------------------------------------------------------

    def follow(self, step: Step) -> Optional[Step]:
        """The step `step` was made from, or None (end of the chain, or a
        finding says why the walk stops)."""
        upstream = step.upstream()
        if upstream is None:
            return None
        kind, recorded, sha = upstream
        if not recorded:
            self.add(step.kind, "damaged", f"link to its {kind}", os.path.join(step.path, layout.MANIFEST),
                     message=f"{os.path.join(step.path, layout.MANIFEST)} records no path for its {kind}: it is "
                     f"damaged or was not written by featurebridge. Re-run {_RERUN[step.kind]}.")
            return None
        directory = _manifest_dir(recorded) if kind == "model" else (recorded if os.path.isdir(recorded) else None)
        found_by = "path"
        if directory is None or not os.path.isfile(os.path.join(directory, layout.MANIFEST)):
            moved = _find_by_digest(sha, [os.path.dirname(recorded), os.path.dirname(step.path)]) if sha else None
            if moved is None:
                identity = (
                    f"Its manifest's sha256 {sha} identifies it, not its path: if it moved, "
                    f"`sha256sum NEWPATH/{layout.MANIFEST}` prints that digest, and `featurebridge lineage NEWPATH` "
                    "walks on from there."
                    if sha else
                    f"{os.path.join(step.path, layout.MANIFEST)} records only its path (made before featurebridge "
                    "linked steps by digest), so it cannot be searched for."
                )
                self.add(step.kind, "missing", _NOUN[kind], recorded, expected=sha,
                         message=f"The {_NOUN[kind]} that the {_NOUN[step.kind]} {step.path} was made from is missing: nothing at "
                         f"{recorded} (moved or deleted). {identity}")
                return None
            directory, found_by = moved, "digest"
            self.add(step.kind, "moved", _NOUN[kind], recorded, expected=sha, found=sha,
                     message=f"The {_NOUN[kind]} is not at its recorded path {recorded}; found it at {moved} by its "
                     f"manifest's sha256 (the digest identifies it; the contents are the ones recorded).")
        try:
            upstream_step = _open_step(directory)
        except ArtifactError as e:
            self.add(step.kind, "damaged", f"{_NOUN[kind]}'s manifest", os.path.join(directory, layout.MANIFEST),
                     message=f"{e} The walk stops here.")
            return None
        holds = None if not sha else upstream_step.manifest_sha256 == sha
        upstream_step.link = {"path": recorded, "manifest_sha256": _sha(sha), "found_by": found_by, "holds": holds}
        self.count("upstream manifests")
        if upstream_step.kind != kind:
            self.add(step.kind, "damaged", f"link to its {kind}", directory,
                     message=f"{step.path} names {directory} as its {kind}, but that is a {upstream_step.kind} "
                     f"(its manifest says job {upstream_step.manifest.get('job')!r}). Re-run {_RERUN[step.kind]}.")
            return None
        if holds is False:
            self.add(step.kind, "changed", f"{_NOUN[kind]}'s manifest", os.path.join(directory, layout.MANIFEST),
                     expected=sha, found=upstream_step.manifest_sha256,
                     message=f"The {_NOUN[kind]} at {directory} is not the one the {_NOUN[step.kind]} {step.path} was made from: its "
                     f"manifest.json has another sha256 (it was rewritten, e.g. with --overwrite, or edited). "
                     f"Re-run {_RERUN[step.kind]} from this {kind}, or restore the {kind} with the recorded digest.")
        elif holds is None:
            self.add(step.kind, "note", f"link to its {kind}", os.path.join(step.path, layout.MANIFEST),
                     message=f"{step.kind} records its {kind} by path only (written before featurebridge linked "
                     f"steps by digest); re-run {_RERUN[step.kind]} to record the link by digest.")
        return upstream_step

    # -- verify --------------------------------------------------------

    def verify_outputs(self, step: Step, start_file: Optional[str] = None) -> None:
        """Recomputes the digest of every file the step's manifest sealed."""
        recorded = step.manifest.get("outputs")
        manifest_path = os.path.join(step.path, layout.MANIFEST)
        if not isinstance(recorded, Mapping):
            self.add(step.kind, "damaged", "manifest", manifest_path,
                     message=f"{manifest_path} has no 'outputs' (the digest of each file the run wrote): it is "
                     f"damaged. Re-run {_RERUN[step.kind]}.")
            return
        found = provenance.directory_digests(step.path, exclude=(layout.MANIFEST,)) if self.verify else {}
        for rel in sorted(recorded):
            path = os.path.join(step.path, rel)
            want = recorded[rel].get("sha256") if isinstance(recorded[rel], Mapping) else None
            if not self.verify and path != start_file:
                continue
            have = found.get(rel, {}).get("sha256") if self.verify else _sha256(path)
            self.count("output files")
            if have is None:
                self.add(step.kind, "missing", "output file", path, expected=want,
                         message=f"{path} was written by {_RERUN[step.kind]} but is not there now. Restore it from a "
                         f"copy, or re-run {_RERUN[step.kind]} to rewrite {step.path}.")
            elif have != want:
                self.add(step.kind, "changed", "output file", path, expected=want, found=have,
                         message=f"{path} changed after {_RERUN[step.kind]} wrote it ({recorded[rel].get('bytes')} "
                         f"bytes then, {found.get(rel, {}).get('bytes', '?')} now). What uses it no longer matches "
                         f"the record: restore it from a copy, or re-run {_RERUN[step.kind]} to rewrite {step.path}.")
        if start_file and os.path.relpath(start_file, step.path) not in recorded:
            self.add(step.kind, "changed", "output file", start_file,
                     message=f"{start_file} is not among the files {_RERUN[step.kind]} wrote to {step.path} "
                     f"(its {layout.MANIFEST} lists each one): it was added or renamed later.")
        for rel in sorted(set(found) - set(recorded)):
            self.add(step.kind, "added", "output file", os.path.join(step.path, rel), found=found[rel]["sha256"],
                     message=f"{os.path.join(step.path, rel)} was not written by the run that sealed "
                     f"{manifest_path} (added later); nothing recorded depends on it.")

    def verify_inputs(self, step: Step) -> None:
        job = _RERUN[step.kind]
        for entry in step.manifest.get("inputs") or ():
            if not isinstance(entry, Mapping) or not entry.get("path"):
                continue
            path, want = str(entry["path"]), entry.get("sha256")
            self.count("input files")
            have = _sha256(path)
            if have is None:
                self.add(step.kind, "missing", "input file", path, expected=want,
                         message=f"Input file {path}, read by {job}, is not there now (moved or deleted). Its "
                         f"sha256 {want} identifies it; {step.path} still describes what was read then.")
            elif have != want:
                size = os.path.getsize(path)
                downstream = " and the model trained from it" if step.kind == "analyzed" else ""
                self.add(step.kind, "changed", "input file", path, expected=want, found=have,
                         message=f"Input file {path} changed after {job} read it ({entry.get('bytes')} bytes then, "
                         f"{size} now): {step.path}{downstream} describe the old contents. Restore the file, or "
                         f"re-run {job} on it (and the steps after it) to use the new contents.")

    def verify_spec(self, step: Step) -> None:
        from featurebridge.transforms.spec import FeatureSpec, load_spec

        m = step.manifest
        manifest_path = os.path.join(step.path, layout.MANIFEST)
        want = m.get("spec_digest")
        try:
            kept = FeatureSpec.from_dict(m.get("spec"), source=manifest_path, trusted=True).digest()
        except Exception as e:  # pylint: disable=broad-except  # any way a damaged spec fails to load
            kept = None
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.add(step.kind, "damaged", "spec", manifest_path, expected=want,
                     message=f"The spec kept in {manifest_path} cannot be read ({reason}): the manifest is "
                     "damaged. Re-run `featurebridge analyze`.")
        self.count("specs")
        if kept is not None and kept != want:
            self.add(step.kind, "changed", "spec", manifest_path, expected=want, found=kept,
                     message=f"The spec kept in {manifest_path} no longer has the digest recorded with it: the "
                     "manifest was edited. Re-run `featurebridge analyze`.")
        source = m.get("spec_source")
        if not source or not isinstance(source, str) or source.startswith("<"):
            return
        if not os.path.isfile(source):
            self.add(step.kind, "note", "spec file", source, expected=want,
                     message=f"The spec file {source} is not there now; {manifest_path} keeps the spec analyze "
                     "used, so the lineage holds.")
            return
        self.count("spec files")
        try:
            now = load_spec(source).digest()
        except Exception as e:  # pylint: disable=broad-except  # an edited spec may fail any check
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.add(step.kind, "changed", "spec file", source, expected=want,
                     message=f"The spec file {source} changed after analyze read it and no longer loads "
                     f"({reason}). {manifest_path} keeps the spec analyze used.")
            return
        if now != want:
            self.add(step.kind, "changed", "spec file", source, expected=want, found=now,
                     message=f"The spec file {source} now describes another spec than the one analyze used "
                     f"(digests of the canonical spec differ; {manifest_path} keeps the one used). Re-run "
                     "`featurebridge analyze` with it (then train and predict), or restore it.")

    def verify_module(self, step: Step) -> None:
        source = step.manifest.get("preprocessing_fn_source")
        if not isinstance(source, Mapping) or not source.get("path"):
            return
        path, want = str(source["path"]), source.get("sha256")
        self.count("preprocessing_fn modules")
        have = _sha256(path)
        if have != want:
            state = "is not there now" if have is None else "changed after analyze ran it"
            self.add(step.kind, "missing" if have is None else "changed", "preprocessing_fn module", path,
                     expected=want, found=have,
                     message=f"The preprocessing_fn module {path} ({source.get('reference')}) {state}: "
                     f"{step.path} was made by the recorded version. Restore it, or re-run "
                     "`featurebridge analyze` (then train and predict) with the new one.")

    def verify_serving(self, step: Step) -> None:
        """The serving export a predictions manifest names is still the one used."""
        link = step.manifest.get("model_link")
        serving = link.get("serving") if isinstance(link, Mapping) else None
        if not isinstance(serving, Mapping) or not serving.get("path"):
            return
        path = os.path.join(str(serving["path"]), "saved_model.pb")
        want = serving.get("saved_model_sha256")
        if not os.path.exists(str(serving["path"])):
            return  # the model's own check (missing, moved) says it
        self.count("serving exports")
        have = _sha256(path)
        if have != want:
            self.add(step.kind, "missing" if have is None else "changed", "serving export", path,
                     expected=want, found=have,
                     message=f"The serving export {serving['path']} (version {serving.get('version')}) that made "
                     f"these predictions {'is gone' if have is None else 'was replaced'}. Re-run "
                     "`featurebridge predict` with the model as it is now, or restore the export.")


def _check_run(walk: _Walk, run_dir: str, summary: Dict[str, Any]) -> None:
    """A run output's summary.json links its three stages by manifest sha256."""
    stages = summary.get("stages")
    if not isinstance(stages, Mapping):
        walk.add("run", "note", "summary", os.path.join(run_dir, layout.SUMMARY_JSON),
                 message="summary.json records its stages by path only (written before featurebridge linked them "
                 "by digest).")
        return
    local = {"analyze": layout.ANALYZED_DIR, "train": layout.MODEL_DIR, "predict": layout.PREDICTIONS_DIR}
    for name, link in sorted(stages.items()):
        if not isinstance(link, Mapping):
            continue
        directory = os.path.join(run_dir, local.get(name, name))
        want = link.get("manifest_sha256")
        have = _sha256(os.path.join(directory, layout.MANIFEST))
        walk.count("run stages")
        if have is None:
            walk.add("run", "missing", f"{name} stage", directory, expected=want,
                     message=f"{directory}, the {name} stage of this run, is missing (moved or deleted).")
        elif have != want:
            walk.add("run", "changed", f"{name} stage", os.path.join(directory, layout.MANIFEST),
                     expected=want, found=have,
                     message=f"The {name} stage at {directory} was rewritten after this run finished (its "
                     "manifest.json has another sha256): re-run `featurebridge run`, or run lineage on the stage.")


def trace(path: str, verify: bool = False) -> Lineage:
    """Walks from an output back to the input files, by the links its
    manifests record.

    Args:
      path: a `featurebridge run` output (its summary.json), a predictions
        directory or one predictions file, a model (or its serving export),
        or an analyze output.
      verify: recompute every digest: the files each manifest sealed, the
        upstream manifests, the input files, the spec file and a
        preprocessing_fn module. Without it only the links (the upstream
        manifests' digests, a few small files) are checked.

    Returns:
      The Lineage; ``ok`` is False when something changed, is missing or a
      manifest up the chain is damaged (see ``findings``). Missing or
      unreadable files are findings, never exceptions.

    Raises:
      ArtifactError: `path` is not a featurebridge output, or its own
        manifest.json or summary.json is damaged (the message names it).
    """
    summary, first, start_file = _start(path)
    walk = _Walk(os.path.abspath(path), verify)
    walk.lineage.run = summary
    if summary is not None:
        run_dir = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
        _check_run(walk, run_dir, summary)
        if not os.path.isfile(os.path.join(first, layout.MANIFEST)):
            raise ArtifactError(
                f"{run_dir} is a `featurebridge run` output, but its predictions {first} have no "
                f"{layout.MANIFEST}. Run lineage on {os.path.join(run_dir, layout.MODEL_DIR)} instead."
            )
    step: Optional[Step] = _open_step(first)
    while step is not None:
        walk.lineage.steps.append(step)
        walk.verify_outputs(step, start_file if step is walk.lineage.steps[0] else None)
        if verify:
            walk.verify_inputs(step)
            if step.kind == "analyzed":
                walk.verify_spec(step)
                walk.verify_module(step)
            if step.kind == "predictions":
                walk.verify_serving(step)
        step = walk.follow(step)
    return walk.lineage
