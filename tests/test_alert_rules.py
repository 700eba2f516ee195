"""The alert rules (issue 16): deploy/prometheus/llmledger-alerts.yml is valid for Prometheus
(`promtool check rules`), each alert fires and stays silent where its unit tests say
(`promtool test rules deploy/prometheus/tests/*.yml`), and the file holds exactly the five
alerts with what an on-call person needs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from prometheus_tools import prometheus_binary

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = DEPLOY / "llmledger-alerts.yml"
ALERTS = {
    "LLMLedgerCallFailureRatioHigh",
    "LLMLedgerTokenSpike",
    "LLMLedgerNoTraffic",
    "LLMLedgerUnpricedCalls",
    "LLMLedgerBudgetBurn",
}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = prometheus_binary("promtool")
    return subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules_accepts_the_file() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_unit_tests_pass_for_every_alert() -> None:
    tests = sorted(str(path.relative_to(DEPLOY)) for path in (DEPLOY / "tests").glob("*.yml"))
    result = _promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in (DEPLOY / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == ALERTS
    assert silent == ALERTS


def test_exactly_the_five_alerts_each_with_severity_summary_and_description() -> None:
    rules = _rules()
    assert sorted(rule["alert"] for rule in rules) == sorted(ALERTS)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        # The description says where to look: a query, a command or a file to check.
        assert "llmledger" in rule["annotations"]["description"], rule["alert"]


def test_the_rules_read_only_the_metric_names_the_service_exposes() -> None:
    from metrics_exposition import referenced_metrics

    text = RULES.read_text()
    assert referenced_metrics(text) <= {
        "llmledger_calls_total",
        "llmledger_tokens_total",
        "llmledger_unpriced_calls_total",
        "llmledger_ingest_failures_total",
        "llmledger_budget_limit_usd",
        "llmledger_budget_spent_usd",
        "llmledger_budget_forecast_usd",
    }


def test_the_example_prometheus_configuration_loads_the_rules() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout
