"""The shipped alert rules: valid for Prometheus, unit-tested, and wired to real metrics.

Debian's promtool (package `prometheus`, installed by scripts/system-deps.sh) checks the
rules, runs the unit tests in tests/fixtures/promtool/, and lints a /metrics page built from
the daemon's metrics. A missing promtool fails these tests: a green run without it would
not have checked the rules.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from gopher_updater.flux_status import FluxMetrics
from gopher_updater.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "containers" / "monitoring"
RULES = MONITORING / "gopher-updater.rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
UNIT_TESTS = sorted((ROOT / "tests" / "fixtures" / "promtool").glob("*.test.yaml"))
README = ROOT / "README.md"
RUNBOOK_BASE = "https://github.com/me/gopher-updater/blob/main/README.md#"

#: The alerts issue 11 asks for, by what they watch.
REQUIRED_ALERTS = {
    "GopherUpdaterDown",
    "GopherUpdaterNotReady",
    "GopherUpdaterChainPollsFailing",
    "GopherUpdaterSourceImageMissing",
    "GopherUpdaterRetagConflict",
    "GopherUpdaterInvalidPlanName",
    "GopherUpdaterPromotionFailing",
    "GopherUpdaterFluxNudgeFailing",
    "GopherUpdaterUpgradeStuck",
}
#: Metrics the rules use that the daemon does not export yet. Empty this as they land:
#: the timeline's and the two proposed with the rules (issue 11) have.
NOT_YET_EXPORTED: set[str] = set()


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: run scripts/system-deps.sh (Debian package prometheus)"
    return found


def run_promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "prometheusrule", ROOT / "scripts/prometheusrule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- promtool ------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_file() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_accepts_the_prometheusrules_spec(tmp_path: Path) -> None:
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    extracted = tmp_path / "spec.yaml"
    extracted.write_text(yaml.safe_dump(spec))
    result = run_promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_cover_stuck_source_missing_and_not_ready() -> None:
    assert UNIT_TESTS, "no promtool unit tests in tests/fixtures/promtool/"
    tested: dict[str, set[str]] = {}
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                firing = {a["exp_labels"]["severity"] for a in check.get("exp_alerts", [])}
                tested.setdefault(check["alertname"], set()).update(firing or {"silent"})
    assert {"critical", "silent"} <= tested["GopherUpdaterUpgradeStuck"]
    assert {"warning", "critical", "silent"} <= tested["GopherUpdaterSourceImageMissing"]
    assert {"warning", "critical", "silent"} <= tested["GopherUpdaterNotReady"]
    assert set(tested) <= {r["alert"] for r in rules()}


def test_promtool_lints_our_metrics_page_clean() -> None:
    metrics = Metrics()
    flux = FluxMetrics(metrics.registry)
    # Every metric holds a value and every labelled one a series, as on a live daemon.
    metrics.chain_height.set(1000)
    metrics.upgrade_height.set(1010)
    metrics.upgrade_eta.set(60)
    metrics.block_time.set(6)
    metrics.polls.labels(result="ok").inc()
    metrics.poll_duration.observe(0.05)
    metrics.retags.labels(outcome="promoted").inc()
    metrics.source_tag_present.labels(tag="release-v1.2.3", upgrade="scheduled").set(1)
    metrics.registry_requests.labels(method="HEAD", code="200").inc()
    metrics.last_successful_poll.set(1_700_000_000)
    flux.count("accepted")
    flux.nudge_delay.set(0.4)
    page = generate_latest(metrics.registry)
    assert b"gopher_updater_flux_nudges_total" in page

    result = run_promtool("check", "metrics", stdin=page)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "gopher_updater" not in result.stdout + result.stderr


# --- the rules' shape ----------------------------------------------------------------------


def test_the_prometheusrule_is_generated_from_the_rules_file() -> None:
    expected = generator().render(RULES.read_text())
    assert PROMETHEUS_RULE.read_text() == expected, "run: python3 scripts/prometheusrule.py"
    doc = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert doc["spec"] == yaml.safe_load(RULES.read_text())


def test_every_required_alert_exists_with_kube_prometheus_conventions() -> None:
    alerts = rules()
    assert {r["alert"] for r in alerts} >= REQUIRED_ALERTS
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"GopherUpdater[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert re.fullmatch(r"\d+[mh]", rule["for"]), name
        assert rule["annotations"].keys() == {"summary", "description", "runbook_url"}, name
        assert rule["annotations"]["summary"].endswith("."), name
        assert rule["annotations"]["runbook_url"] == RUNBOOK_BASE + name.lower(), name


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives headings: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_runbook_url_is_a_readme_heading() -> None:
    anchors = github_anchors(README.read_text())
    for rule in rules():
        anchor = rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE)
        assert anchor in anchors, f"README has no heading for {rule['alert']} (#{anchor})"


def test_every_metric_in_the_rules_is_exported_or_listed_as_coming() -> None:
    metrics = Metrics()
    FluxMetrics(metrics.registry)
    families = list(metrics.registry.collect())
    # Family names cover labelled metrics without series yet; sample names add `_total`.
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    used = {
        name for rule in rules() for name in re.findall(r"\bgopher_updater_[a-z_]+", rule["expr"])
    }
    unknown = used - exported - NOT_YET_EXPORTED
    assert not unknown, f"the rules use metrics nobody exports: {sorted(unknown)}"
    assert NOT_YET_EXPORTED.isdisjoint(exported), "exported now: drop from NOT_YET_EXPORTED"
    readme = README.read_text()
    for name in NOT_YET_EXPORTED:
        assert f"`{name}" in readme, f"{name} is not described in README.md"
