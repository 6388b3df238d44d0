"""`gapbench calibrate`: the machine's measured peaks, kept per machine and reused."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import psutil
import pytest

from harness.archive import calibrations
from harness.archive.store import Archive
from harness.cli import main
from harness.errors import UserError
from harness.machine import calibration as cal
from harness.machine.calibration import Calibration, Figure, GemmShape, machine_key
from harness.machine.fingerprint import detect
from harness.machine.microbench import Effort, round_trips
from harness.measure.calibrate import calibration

SHAPE = GemmShape(4, 64, 96)


@pytest.fixture(scope="module")
def fingerprint():
    return detect(probe_gpus=False, probe_software=False)


@pytest.fixture(scope="module")
def measured(tmp_path_factory, fingerprint):
    archive = Archive(tmp_path_factory.mktemp("archive"))
    found = calibration(archive, fingerprint, threads=(1, 2), shapes=(SHAPE,), quick=True)
    return archive, found


def test_every_figure_is_a_median_inside_its_repeats(measured) -> None:
    _, found = measured
    c = found.calibration
    assert found.measured and c.threads == (1, 2)
    for f in c.figures:
        assert 0 < f.low <= f.value <= f.high, f
        assert f.unit == cal.UNITS[f.measure] and f.repeats >= 3
    for threads in (1, 2):
        assert c.find(cal.GEMM, dtype="float32", threads=threads) is not None
        assert c.find(cal.GEMM_SHAPE, threads=threads, shape=SHAPE.label) is not None
        assert c.bandwidth_gbs(threads) > 0 and math.isfinite(c.ridge(threads))
    for measure in (cal.DISPATCH, cal.JSON_DUMPS, cal.JSON_LOADS, cal.LOOPBACK, cal.PIPE):
        assert c.find(measure, threads=1) is not None, measure
    # A round trip to another process costs more than one operator's dispatch in this one.
    assert c.find(cal.LOOPBACK).value > c.dispatch_us()  # type: ignore[union-attr]


def test_a_kept_calibration_is_reused_until_refreshed(measured, fingerprint) -> None:
    archive, first = measured
    again = calibration(archive, fingerprint, threads=(1,), shapes=(SHAPE,), quick=True)
    assert not again.measured and again.calibration == first.calibration
    assert again.where == first.where and again.where.endswith(f"{machine_key(fingerprint)}.json")
    # A set's listing never takes the calibration's folder for a set.
    assert archive.ids() == []


def test_asking_for_more_measures_again_and_keeps_what_was_there(tmp_path, fingerprint) -> None:
    archive = Archive(tmp_path)
    calibration(archive, fingerprint, threads=(1,), shapes=(SHAPE,), quick=True)
    wider = calibration(archive, fingerprint, threads=(2,), quick=True)
    assert wider.measured and wider.calibration.threads == (1, 2)
    assert (SHAPE, 2) in wider.calibration.shapes
    refreshed = calibration(archive, fingerprint, refresh=True, quick=True)
    assert refreshed.measured and refreshed.calibration.made_utc != wider.calibration.made_utc


def test_a_damaged_or_newer_calibration_is_one_line_naming_the_remedy(tmp_path, fingerprint):
    archive = Archive(tmp_path)
    made = calibration(archive, fingerprint, threads=(1,), quick=True).calibration
    path = tmp_path / calibrations.FOLDER / f"{made.machine}.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match=r"unreadable.*--refresh"):
        calibrations.kept(archive, made.machine)
    body = json.loads(json.dumps({"schema_version": 99}))
    path.write_text(json.dumps(body))
    with pytest.raises(UserError, match="newer than this gapbench"):
        calibrations.kept(archive, made.machine)
    path.write_text(json.dumps({"schema_version": 1, "machine": made.machine}))
    with pytest.raises(UserError, match="corrupt: missing 'cpu'"):
        calibrations.kept(archive, made.machine)


def test_find_takes_the_nearest_thread_count() -> None:
    def gemm(threads: int, value: float) -> Figure:
        return Figure(cal.GEMM, value, value, value, "GFLOP/s", 3, dtype="float32", threads=threads)

    def triad(threads: int, value: float) -> Figure:
        return Figure(cal.TRIAD, value, value, value, "GB/s", 3, dtype="float32", threads=threads)

    c = Calibration(
        "m", "cpu", 8, "t", "v", "2", 1.0, (gemm(1, 50), gemm(8, 380), triad(1, 10), triad(8, 40))
    )
    assert c.peak_gflops(1) == 50 and c.peak_gflops(6) == 380 and c.peak_gflops(4) == 50
    assert c.ridge(8) == pytest.approx(9.5)
    # bfloat16 not measured: float32's peak stands for it rather than nothing.
    assert c.peak_gflops(8, "bfloat16") == 380
    assert math.isnan(replace(c, figures=()).ridge(1))


def test_shape_labels_read_back() -> None:
    assert GemmShape.of("1x384x1536", "bfloat16") == GemmShape(1, 384, 1536, "bfloat16")
    assert GemmShape(2, 3, 4).flops == 48


def test_round_trips_leave_no_process_behind() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    found = round_trips(Effort(2, 0.01, 64, 1 << 20, 20))
    assert [f.measure for f in found] == [cal.LOOPBACK, cal.PIPE]
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


def test_the_verb_refuses_bad_threads_in_one_line(capsys, tmp_path) -> None:
    assert main(["calibrate", "--threads", "0", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_verb_prints_json(capsys, tmp_path) -> None:
    assert (
        main(["calibrate", "--quick", "--threads", "1", "--json", "--results", str(tmp_path)]) == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert body["schema_version"] == cal.CALIBRATION_VERSION and body["measured"]
    assert {f["measure"] for f in body["figures"]} >= {cal.GEMM, cal.TRIAD, cal.DISPATCH}


def test_the_verb_measures_a_profiled_sets_own_shapes(capsys, tmp_path) -> None:
    from conftest import FIRST_V8_SET, FIRST_V9_SET

    argv = ["calibrate", "--quick", "--threads", "1", "--json", "--results", str(tmp_path)]
    assert main([*argv, "--from", str(FIRST_V9_SET)]) == 0
    body = json.loads(capsys.readouterr().out)
    shapes = {f["shape"] for f in body["figures"] if f["measure"] == cal.GEMM_SHAPE}
    assert "16x128x384" in shapes  # the encoder's costliest product, measured alone
    assert main([*argv, "--from", str(FIRST_V8_SET)]) == 2
    assert "--profile" in capsys.readouterr().err


def test_rough_numbers_kept_are_measured_again_unless_rough_is_asked(
    tmp_path, fingerprint, monkeypatch
):
    from harness.measure import calibrate as module

    archive = Archive(tmp_path)
    rough = calibration(archive, fingerprint, threads=(1,), quick=True).calibration
    assert rough.quick
    made = []

    def measured(*args, **kwargs):
        made.append(kwargs.get("quick"))
        return replace(rough, quick=bool(kwargs.get("quick")), made_utc="later")

    monkeypatch.setattr(module, "calibrate", measured)
    assert not calibration(archive, fingerprint, threads=(1,), rough_ok=True).measured
    again = calibration(archive, fingerprint, threads=(1,))
    assert again.measured and made == [False] and not again.calibration.quick
