"""``edge-export package``: a bundle's contents, and that it predicts and benchmarks with TensorFlow blocked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest

from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file as sha256_of

from conftest import cli_main, device_env, load_script

BUNDLE_FILES = {
    "README.md",
    "bundle.json",
    "run.py",
    "requirements.txt",
    "labels.txt",
    "model_card.json",
    "models/tflite-int8.tflite",
    "wheels/edge_export-0.1.0-py3-none-any.whl",
}


def _cli(*args: str):
    from click.testing import CliRunner

    from edge_export.cli import cli

    return CliRunner().invoke(cli, list(args))


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _pins(*names: str) -> list[str]:
    return [f"{n}=={importlib_metadata.version(n)}" for n in names]


@pytest.fixture(scope="module")
def bundle(tiny_export, tmp_path_factory) -> Path:
    """The default package of the tiny run: tflite-int8 (no build recommendation) for a Raspberry Pi, at the default
    place."""
    run = tmp_path_factory.mktemp("pkg") / "run"
    shutil.copytree(tiny_export["run"], run)
    result = _cli("package", str(run), "--target", "rpi")
    assert result.exit_code == 0, result.output
    assert "packaging tflite-int8 (default: no build recommendation) for rpi" in result.output
    return run / "package" / "tflite-int8-rpi"


def test_bundle_folder_and_archive(bundle):
    run = bundle.parents[1]
    assert _files(bundle) == BUNDLE_FILES
    archive = bundle.with_name("tflite-int8-rpi.tar.gz")
    with tarfile.open(archive) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
        assert members == {f"tflite-int8-rpi/{f}" for f in BUNDLE_FILES}
        assert (
            tar.extractfile("tflite-int8-rpi/models/tflite-int8.tflite").read()
            == (bundle / "models/tflite-int8.tflite").read_bytes()
        )
        assert tar.getmember("tflite-int8-rpi/run.py").mode & 0o111
    assert not list(bundle.parent.glob(".*partial*"))  # written under temporary names, then renamed

    info = json.loads((bundle / "bundle.json").read_text())
    manifest = json.loads((run / "export/manifest.json").read_text())
    exported = next(a for a in manifest["artifacts"] if a["name"] == "tflite-int8")
    (model,) = info["artifacts"]
    assert model == {
        "name": "tflite-int8",
        "path": "models/tflite-int8.tflite",
        "format": "tflite",
        "precision": "int8",
        "size_bytes": exported["size_bytes"],
        "sha256": exported["sha256"],
    }
    assert sha256_of(bundle / model["path"]) == exported["sha256"]
    assert info["target"] == "rpi" and info["wheel"] == "wheels/edge_export-0.1.0-py3-none-any.whl"
    assert (bundle / "labels.txt").read_text() == (run / "export/labels.txt").read_text()
    assert json.loads((bundle / "model_card.json").read_text()) == json.loads(
        (run / "export/model_card.json").read_text()
    )

    # pinned to what is installed here; TF-free
    pins = [
        line for line in (bundle / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    # the model was trained with the opencv decoder: the device gets OpenCV too, for the same pixels
    assert (
        pins
        == _pins("numpy", "Pillow", "click", "PyYAML", "ai-edge-litert", "opencv-python-headless")
        == info["pinned"]
    )
    assert "64-bit" in (bundle / "README.md").read_text()

    with zipfile.ZipFile(bundle / info["wheel"]) as whl:
        names = set(whl.namelist())
        meta = whl.read("edge_export-0.1.0.dist-info/METADATA").decode()
    assert {
        "edge_export/runtime/classifier.py",
        "edge_export/benchmarks/suite.py",
        "edge_export/cli.py",
        "edge_export/deploy/bundle_main.py",
    } <= names
    base = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base and not any("tensorflow" in line or "keras" in line for line in base)


def test_recommended_onnx_artifact_for_jetson(tiny_export, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_export["run"], run, ignore=shutil.ignore_patterns("package"))
    (run / "report.json").write_text(json.dumps({"recommendation": {"artifact": "onnx-fp32", "why": "fastest"}}))
    result = _cli("package", str(run), "--target", "jetson", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "packaging onnx-fp32 (the build's recommendation) for jetson" in result.output
    folder = tmp_path / "out" / "onnx-fp32-jetson"
    assert (tmp_path / "out" / "onnx-fp32-jetson.tar.gz").is_file() and (folder / "models/onnx-fp32.onnx").is_file()
    pins = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert pins == _pins("numpy", "Pillow", "click", "PyYAML", "onnxruntime", "opencv-python-headless")
    readme = (folder / "README.md").read_text()
    assert "onnxruntime-gpu" in readme and "--provider tensorrt" in readme and "TensorRT" in readme

    # without report.json: what `build` copied to deploy/
    (run / "report.json").unlink()
    (run / "deploy").mkdir()
    shutil.copy(run / "export/onnx-fp32.onnx", run / "deploy/onnx-fp32.onnx")
    result = _cli("package", str(run), "--out", str(tmp_path / "out2"))
    assert result.exit_code == 0 and "onnx-fp32 (the build's recommendation) for cpu" in result.output


def test_package_errors_leave_nothing_behind(tiny_export, tmp_path):
    from edge_export.deploy.bundle import package_run

    with pytest.raises(EdgeExportError, match="no finished export"):
        package_run(tmp_path, echo=None)
    with pytest.raises(
        EdgeExportError, match=r"no exported artifact 'tflite-fp16' in this run \(exported ok: tflite-int8, onnx-fp32\)"
    ):
        package_run(tiny_export["run"], artifact="tflite-fp16", out=tmp_path / "o", echo=None)
    with pytest.raises(EdgeExportError, match="unknown bundle flavour 'pi'"):
        package_run(tiny_export["run"], flavour="pi", out=tmp_path / "o", echo=None)

    run = tmp_path / "run"
    shutil.copytree(tiny_export["run"], run, ignore=shutil.ignore_patterns("package"))
    (run / "report.json").write_text(json.dumps({"recommendation": {"artifact": "onnx-int8"}}))
    with pytest.raises(EdgeExportError, match="recommends 'onnx-int8' but the export has no such artifact"):
        package_run(run, out=tmp_path / "o", echo=None)
    (run / "report.json").unlink()
    with open(run / "export/tflite-int8.tflite", "ab") as f:
        f.write(b"changed")
    with pytest.raises(EdgeExportError, match="does not match the sha256 in the export manifest"):
        package_run(run, out=tmp_path / "o", wheel=None, echo=None)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())

    result = _cli("package", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_bundle_predicts_and_benchmarks_with_tensorflow_blocked(bundle, tiny_export, tmp_path):
    """A device: no TensorFlow, no matplotlib, no edge-export installed: only the bundle and numpy/Pillow/LiteRT."""
    from edge_export.benchmarks.suite import bench_run
    from edge_export.core.config import BenchConfig
    from edge_export.runtime.classifier import Classifier

    env, python, log = device_env(tmp_path)
    device = tmp_path / "device"
    with tarfile.open(bundle.with_name("tflite-int8-rpi.tar.gz")) as tar:
        tar.extractall(device)
    run_py = device / "tflite-int8-rpi" / "run.py"
    nowhere = subprocess.run(
        [*python, "-c", "import edge_export"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert nowhere.returncode != 0 and "No module named 'edge_export'" in nowhere.stderr  # only the bundle has it

    images = sorted((tiny_export["data"] / "test").rglob("*.png"))[:3]
    proc = subprocess.run(
        [*python, str(run_py), "predict", *map(str, images), "--json", "--top-k", "2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    expected = Classifier.load(bundle / "models/tflite-int8.tflite").predict([str(p) for p in images], top_k=2)
    assert [a["image"] for a in answers] == [str(p) for p in images]
    for answer, predictions in zip(answers, expected):
        assert [p["label"] for p in answer["predictions"]] == [p.label for p in predictions]
        assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
            [p.probability for p in predictions], abs=1e-6
        )

    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            *python,
            str(run_py),
            "bench",
            "--data",
            str(tiny_export["data"]),
            "--out",
            str(out),
            "--threads",
            "1",
            "--runs",
            "5",
            "--warmup",
            "1",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "no plots: matplotlib is not installed" in proc.stdout
    report = json.loads((out / "bench.json").read_text())
    (row,) = report["artifacts"]
    assert (
        row["name"] == "tflite-int8"
        and row["status"] == "ok"
        and row["backend"] == "litert"
        and row["target"] == "local"
    )
    assert row["latency_ms"]["p50"] > 0 and row["images"] == 12
    machine = report["machine"]
    assert isinstance(machine["cpu"], str) and machine["cpu"] and isinstance(machine["cores"], int) and machine["os"]
    assert machine["libraries"]["ai-edge-litert"] == importlib_metadata.version("ai-edge-litert")
    assert (out / "bench.md").is_file() and not list(out.glob("*.png"))
    assert not log.exists(), f"tried to import: {log.read_text()}"

    here = bench_run(
        models=[bundle / "models/tflite-int8.tflite"],
        data=tiny_export["data"],
        labels=bundle / "labels.txt",
        config=BenchConfig(threads=[1], runs=5, warmup=1),
        out=tmp_path / "here",
        isolate=False,
        echo=None,
    )
    assert row["accuracy"] == here.report["artifacts"][0]["accuracy"]
    assert row["confusion"] == here.report["artifacts"][0]["confusion"]

    # a video through the bundle's run.py, on the device side too (OpenCV from the device's packages)
    pytest.importorskip("cv2", reason="OpenCV (the video extra) is not installed")
    from test_frames import COLOURS, write_video

    video = write_video(tmp_path / "clip.avi", COLOURS[8:12])  # red, red, blue, blue
    proc = subprocess.run(
        [*python, str(run_py), "predict", str(video), "--json", "--top-k", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [x["predictions"][0]["label"] for x in lines[:-1]] == COLOURS[8:12]
    assert lines[-1]["event"] == "summary" and lines[-1]["frames_classified"] == 4
    assert not log.exists(), f"tried to import: {log.read_text()}"


def test_wheel_from_an_installed_copy(bundle, tmp_path):
    """Without a source tree, the installed files are packed into a wheel again: the same modules."""
    from edge_export.deploy.wheel import _repack_installed

    original = bundle / "wheels/edge_export-0.1.0-py3-none-any.whl"
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(target),
            str(original),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    dist = importlib_metadata.PathDistribution(target / "edge_export-0.1.0.dist-info")
    (tmp_path / "w").mkdir()
    repacked = _repack_installed(dist, tmp_path / "w")
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(repacked) as b:
        code = lambda z: {n: z.read(n) for n in z.namelist() if n.startswith("edge_export/")}  # noqa: E731
        assert code(a) == code(b) and len(code(a)) > 50
        assert b.read("edge_export-0.1.0.dist-info/METADATA") == a.read("edge_export-0.1.0.dist-info/METADATA")
        record = b.read("edge_export-0.1.0.dist-info/RECORD").decode().splitlines()
        assert len(record) == len(b.namelist()) and all(line.count(",") == 2 for line in record)


# ----------------------------------------------------------------------------- names and paths from files are data


def _run_copy(tiny_export, tmp_path) -> Path:
    run = tmp_path / "work" / "run"
    shutil.copytree(tiny_export["run"], run, ignore=shutil.ignore_patterns("package"))
    return run


def _edit_manifest(run: Path, **changes) -> None:
    path = run / "export/manifest.json"
    manifest = json.loads(path.read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "tflite-int8")
    entry.update(changes)
    path.write_text(json.dumps(manifest))


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (a run folder's lock file aside)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".lock")
    }


@pytest.mark.parametrize("how", ["name", "path", "recommendation"])
def test_package_refuses_names_and_paths_that_leave_the_run_folder(tiny_export, tmp_path, capsys, how):
    """A manifest (or report.json) naming `../../victim`: a one-line error; nothing outside the run is touched."""
    run = _run_copy(tiny_export, tmp_path)
    victim = tmp_path / "victim-cpu"  # where RUN/package/../../victim-cpu lands
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (tmp_path / "victim.tflite").write_bytes((run / "export/tflite-int8.tflite").read_bytes())
    if how == "name":
        _edit_manifest(run, name="../../victim")
        args = ["--artifact", "../../victim"]
    elif how == "path":
        _edit_manifest(run, path="../../victim.tflite")
        args = ["--artifact", "tflite-int8"]
    else:
        (run / "report.json").write_text(json.dumps({"recommendation": {"artifact": "../../victim"}}))
        args = []
    before = _tree(tmp_path)
    code, output = cli_main(capsys, "package", str(run), *args)
    assert code == 2, output
    assert output.startswith("error: ") and "../../victim" in output, output
    assert "not a safe name" in output or "points outside" in output
    assert _tree(tmp_path) == before  # nothing written or replaced anywhere, the run folder included
    assert not (run / "package").exists()


def test_deploy_refuses_a_manifest_path_outside_the_export(tiny_export, tmp_path):
    from edge_export.core.records.recommendation import Recommendation
    from edge_export.core.run_folder import RunFolder
    from edge_export.pipeline.runner import _deploy

    run = _run_copy(tiny_export, tmp_path)
    (tmp_path / "work" / "secret.tflite").write_bytes(b"not for the deploy folder")
    _edit_manifest(run, path="../../secret.tflite")
    with pytest.raises(EdgeExportError, match="points outside"):
        _deploy(RunFolder(run), Recommendation("tflite-int8", "test"))
    assert not list((run / "deploy").glob("*.tflite")) if (run / "deploy").exists() else True


def _refused_on_the_device(bundle_copy: Path, tmp_path: Path) -> str:
    """`python run.py predict x.png` in ``bundle_copy``: exit 2 with one error line (returned), nothing run."""
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, str(bundle_copy / "run.py"), "predict", str(image)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "key, value",
    [
        ("wheel", "../outside"),
        ("artifact_path", "../../outside/model.tflite"),
        ("artifact_path", "/etc/passwd"),
        ("labels", "../outside/labels.txt"),
    ],
)
def test_bundle_json_paths_outside_the_bundle_are_refused_on_the_device(bundle, tmp_path, key, value):
    """run.py checks bundle.json before it imports anything from the paths it names."""
    device = tmp_path / "device"
    copy = device / "b"
    shutil.copytree(bundle, copy)
    outside = device / "outside"
    (outside / "edge_export").mkdir(parents=True)
    marker = tmp_path / "imported-from-outside"
    (outside / "edge_export" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    info = json.loads((copy / "bundle.json").read_text())
    if key == "artifact_path":
        info["artifacts"][0]["path"] = value
    else:
        info[key] = value
    (copy / "bundle.json").write_text(json.dumps(info))
    line = _refused_on_the_device(copy, tmp_path)
    assert line.startswith("error: bundle.json") and "outside the bundle" in line
    assert not marker.exists()

    # the development side reads bundle.json with the same rules
    from edge_export.deploy.bundle import BundleLayout

    with pytest.raises(EdgeExportError, match="points outside"):
        BundleLayout(copy).read_info()


def test_bundle_check_refuses_a_tar_with_dotdot_members(tmp_path):
    import io

    bundle_check = load_script("bundle_check")

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("b/bundle.json", "b/../../escaped.txt"):
            data = b"{}"
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(EdgeExportError, match="refused to unpack"):
        bundle_check.unpack(archive, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()

    from click.testing import CliRunner

    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(bundle_check.main, [str(archive), "--data", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "refused to unpack" in result.output
    assert not list(tmp_path.rglob("escaped.txt"))


def test_bundle_benchmark_from_the_repository_root(bundle, tiny_export, tmp_path):
    """The working directory never shadows the package: run.py's measuring workers (`python -m
    edge_export.benchmarks.worker`) started from a checkout of edge-export still import the bundle's copy."""
    root = Path(__file__).resolve().parents[1]
    assert (root / "pyproject.toml").is_file()
    env, python, _ = device_env(tmp_path)
    device = tmp_path / "device"
    with tarfile.open(bundle.with_name("tflite-int8-rpi.tar.gz")) as tar:
        tar.extractall(device)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            *python,
            str(device / "tflite-int8-rpi" / "run.py"),
            "bench",
            "--data",
            str(tiny_export["data"]),
            "--out",
            str(out),
            "--threads",
            "1",
            "--runs",
            "5",
            "--warmup",
            "1",
        ],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (row,) = json.loads((out / "bench.json").read_text())["artifacts"]
    assert row["status"] == "ok" and row["images"] == 12, row


@pytest.mark.parametrize("damage", ["swapped model", "missing wheel"])
def test_bundle_verifies_itself_before_it_runs(bundle, tmp_path, damage):
    """Issue 25: run.py checks each model and the wheel against bundle.json's sha256 before anything runs; a
    swapped model is not run silently, a missing wheel does not fall back to an installed edge_export."""
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    info = json.loads((copy / "bundle.json").read_text())
    assert len(info["wheel_sha256"]) == 64 and all(len(a["sha256"]) == 64 for a in info["artifacts"])
    if damage == "swapped model":
        model = copy / info["artifacts"][0]["path"]
        data = bytearray(model.read_bytes())
        data[-1] ^= 0xFF  # one byte changed
        model.write_bytes(bytes(data))
        expected = info["artifacts"][0]["path"] + " differs from bundle.json"
    else:
        (copy / info["wheel"]).unlink()
        expected = info["wheel"] + " is missing"
    line = _refused_on_the_device(copy, tmp_path)
    assert "the bundle does not match bundle.json" in line and expected in line
