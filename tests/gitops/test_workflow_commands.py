"""The GitHub workflows' commands, run the way the workflows run them, on the local backend.

The ``reconciler`` commands are read out of ``.github/workflows/*.yml`` (so the workflows and
these tests cannot drift apart) and run as subprocesses (``sys.executable -m reconciler``) on
a copy of the sample repository with its state in a temporary folder. The shell scripts of
the steps that decide things (write the plan comment, apply or re-plan, open or close the
drift issue, find the reviewed plan) run under bash as GitHub runs them, with a fake ``gh``.
``UPDATE_GOLDEN=1`` rewrites the golden files under tests/golden/gitops/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli.main import build_parser
from reconciler.providers.local.provider import LocalProvider
from reconciler.providers.local.store import Store
from reconciler.spec.loader import load_environment
from tests.conftest import copy_sample
from tests.e2e.helpers import check_golden

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
SCRIPT = REPO / ".github" / "scripts" / "environments.py"
ENV_DIR = "environments/local"
COMMENT_LIMIT = 65_536  # GitHub's limit for a comment or an issue body, in characters
REFUSED = "changed since this plan was made"  # what apply.yml greps to decide to re-plan
DEVICES = {"cam-a1": {"environment": "dev", "site": "a"}, "cam-a2": {"environment": "dev", "site": "a"},
           "cam-b1": {"environment": "dev", "site": "b"}}


# --- reading the workflows ------------------------------------------------------------------

def workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def triggers(data: dict[str, Any]) -> dict[str, Any]:
    on: dict[str, Any] = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as True
    return on


def steps(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in workflow(name)["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def step(name: str, title: str) -> dict[str, Any]:
    found = [s for _, s in steps(name) if s.get("name") == title]
    assert len(found) == 1, f"{name}: expected one step named {title!r}"
    return found[0]


# A command, not prose: the environment folder or a saved plan follows the subcommand.
_COMMAND = re.compile(r"(?<![\w-])reconciler\s+(?:validate|plan|apply|drift)\s+(?:\"\$ENV_DIR\"|[\w./-]+\.json)"
                      r"[^;|&>\n]*")


def reconciler_commands(name: str) -> list[list[str]]:
    """Every ``reconciler ...`` invocation in the workflow's run scripts, as argv (without
    the program name), ``$ENV_DIR`` replaced by the sample environment; and every command a
    step gives this repository's action (``uses: ./``), as the action runs it."""
    commands = []
    for _, s in steps(name):
        for match in _COMMAND.finditer(s.get("run", "")):
            text = re.sub(r"\s+\d$", "", match.group(0).strip())  # the fd of a following 2>&1
            argv = [ENV_DIR if token == "$ENV_DIR" else token for token in shlex.split(text)[1:]]
            commands.append(argv)
        if s.get("uses") == "./" and s.get("with", {}).get("command"):
            commands.extend(action_commands(s["with"]))
    return commands


# --- this repository's action (action.yml) ---------------------------------------------------

ACTION = REPO / "action.yml"
FAKE_RECONCILER = """
import json, os, sys
with open(os.environ["FAKE_RECONCILER_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_RECONCILER_CODE", "0")))
"""


def action_inputs(with_: dict[str, str]) -> dict[str, str]:
    """A step's ``with:`` as the action's run step sees it (its ``env:``), ``${{ matrix.dir }}`` the sample."""
    unknown = set(with_) - set(yaml.safe_load(ACTION.read_text())["inputs"])
    assert not unknown, f"the action has no inputs {sorted(unknown)}"
    value = {k: str(v).replace("${{ matrix.dir }}", ENV_DIR) for k, v in with_.items()}
    return {"COMMAND": value.get("command", ""), "ENV_DIR": value.get("environment", ""),
            "ARGS": value.get("args", "")}


def run_action(with_: dict[str, str], cwd: Path, *, state: Path | None = None,
               fake_code: int | None = None) -> tuple[StepResult, list[list[str]]]:
    """The action's run step (not its install step: the test's virtual environment has edge-reconciler),
    as GitHub runs it: its script under bash with the step's ``env:``. With ``fake_code``, a fake
    ``reconciler`` that exits with it records the commands instead of running them."""
    run = next(s for s in yaml.safe_load(ACTION.read_text())["runs"]["steps"] if s.get("id") == "run")
    assert set(run["env"]) == {"COMMAND", "ENV_DIR", "ARGS"}
    runner = cwd.parent / f"action-{len(list(cwd.parent.glob('action-*')))}"
    runner.mkdir()
    (runner / "script.sh").write_text(run["run"])
    for name in ("output", "summary", "reconciler.log"):
        (runner / name).write_text("")
    tools = Path(sys.executable).parent
    path = f"{tools}{os.pathsep}{os.environ['PATH']}"
    if fake_code is not None:
        fake = runner / "bin" / "reconciler"
        fake.parent.mkdir()
        fake.write_text(f"#!{sys.executable}\n{FAKE_RECONCILER}")
        fake.chmod(0o755)
        path = f"{fake.parent}{os.pathsep}{path}"
    environment = {
        **os.environ, **action_inputs(with_), "PATH": path, "GITHUB_ACTION_PATH": str(REPO),
        "RUNNER_TEMP": str(runner), "GITHUB_OUTPUT": str(runner / "output"),
        "GITHUB_STEP_SUMMARY": str(runner / "summary"), "FAKE_RECONCILER_LOG": str(runner / "reconciler.log"),
        "FAKE_RECONCILER_CODE": str(fake_code or 0),
    }
    if state is not None:
        environment["RECONCILER_STATE_DIR"] = str(state)
    process = subprocess.run([run["shell"], "--noprofile", "--norc", "-eo", "pipefail", str(runner / "script.sh")],
                             cwd=cwd, env=environment, text=True, capture_output=True, timeout=300)
    outputs = dict(line.split("=", 1) for line in (runner / "output").read_text().splitlines() if "=" in line)
    argv = [json.loads(line) for line in (runner / "reconciler.log").read_text().splitlines()]
    return StepResult(process, outputs, (runner / "summary").read_text(), []), argv


def action_commands(with_: dict[str, str]) -> list[list[str]]:
    """The ``reconciler`` commands the action runs for these inputs when they succeed."""
    scratch = Path(tempfile.mkdtemp(prefix="action-commands-"))
    try:
        (scratch / "work").mkdir()
        result, argv = run_action(with_, scratch / "work", fake_code=0)
        assert result.code == 0, result.err
        return argv
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def command(name: str, subcommand: str, *, having: tuple[str, ...] = (), lacking: tuple[str, ...] = ()) -> list[str]:
    found = [argv for argv in reconciler_commands(name) if argv[0] == subcommand
             and all(t in argv for t in having) and not any(t in argv for t in lacking)]
    assert found, f"{name} runs no `reconciler {subcommand}` with {having} and without {lacking}"
    assert all(argv == found[0] for argv in found), f"{name}: ambiguous `reconciler {subcommand}`: {found}"
    return found[0]


# --- running things -------------------------------------------------------------------------

def reconciler(root: Path, state: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECONCILER_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=root, env=env, text=True,
                          capture_output=True, timeout=300)


class Repo:
    """A copy of the sample repository on the local backend."""

    def __init__(self, base: Path):
        self.root = base / "repo"
        self.state = base / "state"
        copy_sample(self.root)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return reconciler(self.root, self.state, argv)

    def provider(self) -> LocalProvider:
        assert os.environ["RECONCILER_STATE_DIR"] == str(self.state)  # set by the fixture
        return LocalProvider(load_environment(self.root / ENV_DIR).environment)

    def add_devices(self) -> None:
        provider = self.provider()
        try:
            provider.simulator.add(list(DEVICES.items()))
        finally:
            provider.close()

    def edit_priority_out_of_band(self, name: str, priority: int) -> None:
        """A hand edit through the local backend's store, as someone would in the portal."""
        store = Store(self.state)
        try:
            row = next(r for r in store.deployments() if r.name == name)
            store.update_deployment(row.id, row.target_condition, priority, row.labels, row.metrics)
        finally:
            store.close()

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    return Repo(tmp_path)


FAKE_GH = """
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
for rule in json.loads(os.environ.get("FAKE_GH_RULES", "[]")):
    if all(token in args for token in rule["match"]):
        if "copy" in rule:
            source, folder = rule["copy"]
            os.makedirs(folder, exist_ok=True)
            shutil.copy(source, folder)
        sys.stdout.write(rule.get("stdout", ""))
        sys.exit(rule.get("code", 0))
"""


class StepResult:
    def __init__(self, process: subprocess.CompletedProcess[str], outputs: dict[str, str], summary: str,
                 gh_calls: list[list[str]]):
        self.code = process.returncode
        self.out = process.stdout
        self.err = process.stderr
        self.outputs = outputs
        self.summary = summary
        self.gh_calls = gh_calls


def run_step(workflow_name: str, title: str, cwd: Path, env: dict[str, str],
             gh_rules: list[dict[str, Any]] | None = None, state: Path | None = None) -> StepResult:
    """Run one step's script as GitHub does (bash -eo pipefail), ``env`` standing in for the
    step's ``env:`` (every variable it declares must be given) and a fake ``gh`` on PATH."""
    s = step(workflow_name, title)
    missing = set(s.get("env", {})) - set(env)
    assert not missing, f"give the step's variables: {sorted(missing)}"
    runner = cwd.parent / f"runner-{re.sub(r'[^a-z]+', '-', title.lower())}"
    runner.mkdir(exist_ok=True)
    (runner / "script.sh").write_text(s["run"])
    gh = runner / "bin" / "gh"
    gh.parent.mkdir(exist_ok=True)
    gh.write_text(f"#!{sys.executable}\n{FAKE_GH}")
    gh.chmod(0o755)
    for name in ("output", "summary", "gh.log"):
        (runner / name).write_text("")
    tools = Path(sys.executable).parent  # reconciler and python of this virtual environment
    assert (tools / "reconciler").exists()
    environment = {
        **os.environ, **env,
        "PATH": f"{gh.parent}{os.pathsep}{tools}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(runner / "output"), "GITHUB_STEP_SUMMARY": str(runner / "summary"),
        "GITHUB_REPOSITORY": "contoso/edge-models", "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "FAKE_GH_LOG": str(runner / "gh.log"), "FAKE_GH_RULES": json.dumps(gh_rules or []),
    }
    if state is not None:
        environment["RECONCILER_STATE_DIR"] = str(state)
    process = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(runner / "script.sh")],
                             cwd=cwd, env=environment, text=True, capture_output=True, timeout=300)
    outputs = dict(line.split("=", 1) for line in (runner / "output").read_text().splitlines() if "=" in line)
    calls = [json.loads(line) for line in (runner / "gh.log").read_text().splitlines()]
    return StepResult(process, outputs, (runner / "summary").read_text(), calls)


# --- the workflows' commands ----------------------------------------------------------------

def test_every_reconciler_command_in_the_workflows_is_valid_cli() -> None:
    parser = build_parser()
    seen = set()
    for name in ("plan.yml", "apply.yml", "drift.yml", "rollout.yml"):
        for argv in reconciler_commands(name):
            parser.parse_args(argv)  # exits (fails the test) on an unknown flag or value
            seen.add(argv[0])
    assert seen == {"validate", "plan", "apply", "drift"}


def test_validate_annotates_the_broken_lines(repo: Repo) -> None:
    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: high ")
    repo.edit(f"{ENV_DIR}/models.yaml", "name: iris-classifier ", "name: Iris_Classifier ")
    result = repo.run(command("plan.yml", "validate", having=("github",)))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "::error file=environments/local/deployments.yaml,line=23,col=13::Deployment/iris-base: spec.priority: "
        "must be an integer (got string 'high')",
        "::error file=environments/local/images.yaml,line=20,col=7::Image/iris-scorer: spec.models[0]: "
        "no Model named 'iris-classifier' in this environment",
        "::error file=environments/local/models.yaml,line=8,col=9::Model/Iris_Classifier: metadata.name: "
        "'Iris_Classifier' is not allowed: Name of the model: lowercase letters, digits and `-`, 1-64 characters, "
        "starting and ending with a letter or digit (pattern ^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$)",
    ]
    assert result.stderr == "error: 3 problems in the specs\n"
    text = repo.run(command("plan.yml", "validate", lacking=("github",)))
    assert text.returncode == 1
    assert "environments/local/deployments.yaml:23:13: Deployment/iris-base: spec.priority" in text.stderr


def test_plan_apply_the_saved_plan_then_no_changes_and_drift(repo: Repo) -> None:
    repo.add_devices()
    plan = repo.run(command("plan.yml", "plan"))
    assert plan.returncode == 2, plan.stderr  # --detailed-exitcode: changes
    check_golden("gitops/plan.md", plan.stdout)
    saved = json.loads((repo.root / "plan.json").read_text())
    assert saved["state_fingerprint"] not in plan.stdout and saved["desired_fingerprint"] not in plan.stdout

    # apply.yml downloads the artifact into reviewed-plan/ and applies exactly that plan.
    (repo.root / "reviewed-plan").mkdir()
    shutil.move(repo.root / "plan.json", repo.root / "reviewed-plan" / "plan.json")
    applied = repo.run(command("apply.yml", "apply", lacking=("--auto-approve",)))
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete (the saved plan): 4 to add, 0 to change, 0 to replace, 0 to destroy." in applied.stdout

    again = repo.run(command("plan.yml", "plan"))
    assert again.returncode == 0, again.stderr
    assert "**No changes. The actual state matches the specs.**" in again.stdout

    clean = repo.run(command("drift.yml", "drift"))
    assert clean.returncode == 0, clean.stderr
    check_golden("gitops/drift-none.md", clean.stdout)

    repo.edit_priority_out_of_band("iris-base", 3)
    drifted = repo.run(command("drift.yml", "drift"))
    assert drifted.returncode == 2, drifted.stderr
    assert "priority is 3, the specs say 10" in drifted.stdout
    check_golden("gitops/drift.md", drifted.stdout)


@pytest.mark.parametrize("moved", ["state", "specs"])
def test_a_stale_saved_plan_is_refused_and_a_new_plan_applies(repo: Repo, moved: str) -> None:
    assert REFUSED in step("apply.yml", "Apply")["run"]
    assert repo.run(command("plan.yml", "plan")).returncode == 2
    if moved == "state":
        provider = repo.provider()
        try:
            provider.create_unmanaged_deployment("hotfix", {"$edgeAgent": {}}, "tags.site='a'", 90, layered=True)
        finally:
            provider.close()
    else:
        repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: 11 ")
    refused = repo.run(["apply", "plan.json"])
    assert refused.returncode == 1
    assert REFUSED in refused.stderr
    assert "Traceback" not in refused.stderr

    replanned = repo.run(command("apply.yml", "plan"))
    assert replanned.returncode == 0, replanned.stderr
    assert "**Plan: 4 to add, 0 to change, 0 to replace, 0 to destroy.**" in replanned.stdout
    applied = repo.run(command("apply.yml", "apply", having=("--auto-approve",)))
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete (a fresh plan): 4 to add" in applied.stdout
    assert repo.run(command("plan.yml", "plan")).returncode == 0


# --- the steps' scripts ---------------------------------------------------------------------

def plan_steps(repo: Repo) -> StepResult:
    """plan.yml's Validate, Plan and Write the comment, wired as the workflow wires them."""
    validate = run_step("plan.yml", "Validate", repo.root, {"ENV_DIR": ENV_DIR}, state=repo.state)
    assert validate.code == 0, validate.err
    plan: StepResult | None = None
    if validate.outputs["valid"] == "true":
        plan = run_step("plan.yml", "Plan", repo.root, {"ENV_DIR": ENV_DIR, "IOTHUB_CONNECTION_STRING": ""},
                        state=repo.state)
        assert plan.code == 0, plan.err
    comment = run_step("plan.yml", "Write the comment", repo.root, {
        "ENV_NAME": "local", "ENV_DIR": ENV_DIR, "PROVIDER": "local", "VALID": validate.outputs["valid"],
        "PLAN_OK": plan.outputs.get("ok", "") if plan else "", "PLAN_CODE": plan.outputs["exit-code"] if plan else "",
        "HEAD_SHA": "c0ffee0123456789c0ffee0123456789c0ffee01", "RUN_URL": "https://github.example/runs/1",
    })
    assert comment.code == 0, comment.err
    comment.outputs = {**validate.outputs, **(plan.outputs if plan else {})}
    return comment


def test_the_plan_comment_is_the_plan_with_a_footer(repo: Repo) -> None:
    result = plan_steps(repo)
    assert result.outputs == {"valid": "true", "exit-code": "2", "ok": "true"}
    text = (repo.root / "comment.md").read_text()
    plan = (repo.root / "plan.md").read_text()
    assert text.startswith(plan)
    assert text.endswith("<sub>`environments/local` at c0ffee012345 · [workflow run](https://github.example/runs/1)"
                         "</sub>\n")
    assert "this runner starts empty" in text
    assert result.summary == text
    assert (repo.root / "plan.json").exists()


def test_the_plan_comment_of_invalid_specs_lists_the_problems(repo: Repo) -> None:
    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: high ")
    result = plan_steps(repo)
    assert result.outputs == {"valid": "false"}
    text = (repo.root / "comment.md").read_text()
    assert text.startswith("### edge-reconciler plan for `local`: the specs are not valid\n")
    assert "environments/local/deployments.yaml:23:13: Deployment/iris-base: spec.priority" in text
    assert not (repo.root / "plan.json").exists()


def apply_step(repo: Repo, pr: str, plan_run: str) -> StepResult:
    return run_step("apply.yml", "Apply", repo.root, {
        "ENV_NAME": "local", "ENV_DIR": ENV_DIR, "PR": pr, "PLAN_RUN": plan_run,
        "RUN_URL": "https://github.example/runs", "IOTHUB_CONNECTION_STRING": "",
    }, state=repo.state)


def test_apply_step_applies_the_reviewed_plan(repo: Repo) -> None:
    assert repo.run(command("plan.yml", "plan")).returncode == 2
    (repo.root / "reviewed-plan").mkdir()
    shutil.move(repo.root / "plan.json", repo.root / "reviewed-plan" / "plan.json")
    result = apply_step(repo, "7", "111")
    assert result.code == 0, result.err
    assert result.summary.startswith("### edge-reconciler apply for `local`: succeeded\n\n"
                                     "Applied the plan reviewed on #7 ([plan run](https://github.example/runs/111)).\n")
    assert "Apply complete (the saved plan): 4 to add" in result.summary
    assert "The new plan" not in result.summary


def test_apply_step_replans_when_the_reviewed_plan_is_stale(repo: Repo) -> None:
    assert repo.run(command("plan.yml", "plan")).returncode == 2
    (repo.root / "reviewed-plan").mkdir()
    shutil.move(repo.root / "plan.json", repo.root / "reviewed-plan" / "plan.json")
    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: 11 ")  # main moved after the review
    result = apply_step(repo, "7", "111")
    assert result.code == 0, result.err
    assert result.summary.startswith(
        "### edge-reconciler apply for `local`: succeeded\n\nThe plan reviewed on #7 was refused: the state or the "
        "specs changed since it was made. Planned again and applied with `--auto-approve`.\n")
    assert REFUSED in result.summary
    assert "Apply complete (a fresh plan): 4 to add" in result.summary
    assert "<details><summary>The new plan</summary>" in result.summary
    assert repo.run(command("plan.yml", "plan")).returncode == 0


def test_apply_step_without_a_reviewed_plan_plans_and_applies(repo: Repo) -> None:
    result = apply_step(repo, "", "")
    assert result.code == 0, result.err
    assert "No reviewed plan (no merged pull request for this commit). Planned and applied" in result.summary
    failing = Repo(repo.root.parent / "broken")
    failing.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: high ")
    result = apply_step(failing, "8", "")
    assert result.code == 1
    assert result.summary.startswith("### edge-reconciler apply for `local`: failed (exit code 1)\n\n"
                                     "No reviewed plan of #8 was found.")


def test_download_step_finds_the_plan_of_the_merged_pull_request(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "plan.json").write_text("{}")
    rules = [
        {"match": ["api", "repos/contoso/edge-models/commits/0123456789abcdef0123456789abcdef01234567/pulls"],
         "stdout": "42\n"},
        {"match": ["api", "repos/contoso/edge-models/pulls/42"], "stdout": "feedface\n"},
        {"match": ["run", "list", "feedface"], "stdout": "222\n111\n"},
        {"match": ["run", "download", "222"], "code": 1},
        {"match": ["run", "download", "111", "plan-prod"], "copy": [str(tmp_path / "artifact" / "plan.json"),
                                                                    "reviewed-plan"]},
    ]
    found = run_step("apply.yml", "Download the reviewed plan", tmp_path / "work",
                     {"GH_TOKEN": "t", "GH_REPO": "contoso/edge-models", "ENV_NAME": "prod"}, rules)
    assert found.code == 0, found.err
    assert found.outputs == {"pr": "42", "run": "111"}
    assert (tmp_path / "work" / "reviewed-plan" / "plan.json").exists()
    run_list = next(c for c in found.gh_calls if c[:2] == ["run", "list"])
    assert run_list[run_list.index("--workflow") + 1] == "plan.yml"

    none = run_step("apply.yml", "Download the reviewed plan", tmp_path / "work",
                    {"GH_TOKEN": "t", "GH_REPO": "contoso/edge-models", "ENV_NAME": "prod"}, [])
    assert none.code == 0, none.err
    assert none.outputs == {}


ISSUE_STEP = "Open, update or close the drift issue"


def drift_issue(cwd: Path, code: str, rules: list[dict[str, Any]]) -> StepResult:
    result = run_step("drift.yml", ISSUE_STEP, cwd, {
        "GH_TOKEN": "t", "GH_REPO": "contoso/edge-models", "ENV_NAME": "prod", "CODE": code,
        "RUN_URL": "https://github.example/runs/5"}, rules)
    assert result.code == 0, result.err
    return result


def test_drift_issue_is_opened_updated_and_closed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    report = "### edge-reconciler drift for `prod`: 1 difference(s)\n\n| a | b |\n"
    (work / "drift.md").write_text(report)
    other_issue = {"number": 3, "title": "Drift in prod-eu"}

    opened = drift_issue(work, "2", [{"match": ["issue", "list"], "stdout": json.dumps([other_issue])}])
    create = [c for c in opened.gh_calls if c[:2] == ["issue", "create"]]
    assert create == [["issue", "create", "--title", "Drift in prod", "--body-file", "body.md", "--label", "drift"]]
    body = (work / "body.md").read_text()
    assert body.startswith(report) and len(body) < COMMENT_LIMIT

    listed = json.dumps([other_issue, {"number": 9, "title": "Drift in prod"}])
    same = drift_issue(work, "2", [{"match": ["issue", "list"], "stdout": listed},
                                   {"match": ["issue", "view", "9"], "stdout": body.replace("\n", "\r\n")}])
    assert [c[:3] for c in same.gh_calls if c[0] == "issue"] == [
        ["issue", "list", "--state"], ["issue", "view", "9"], ["issue", "edit", "9"]]

    changed = drift_issue(work, "2", [{"match": ["issue", "list"], "stdout": listed},
                                      {"match": ["issue", "view", "9"], "stdout": "an older report\n"}])
    assert [c[:3] for c in changed.gh_calls if c[0] == "issue"][-2:] == [
        ["issue", "edit", "9"], ["issue", "comment", "9"]]

    closed = drift_issue(work, "0", [{"match": ["issue", "list"], "stdout": listed}])
    assert closed.gh_calls[-1][:3] == ["issue", "close", "9"]

    nothing = drift_issue(work, "0", [{"match": ["issue", "list"], "stdout": json.dumps([other_issue])}])
    assert [c[:2] for c in nothing.gh_calls] == [["issue", "list"]]


# --- a plan of 200 resources ----------------------------------------------------------------

def generate_200(root: Path) -> None:
    """60 models, 50 images and 90 deployments (under IoT Hub's 100), in a local environment."""
    (root / ".git").mkdir(parents=True)
    env = root / "environments" / "local"
    env.mkdir(parents=True)
    code = root / "code"
    code.mkdir()
    (code / "score.py").write_text("def init():\n    pass\n\n\ndef run(input_data):\n    return input_data\n")
    (code / "conda.yaml").write_text("name: scorer\ndependencies:\n  - python=3.10\n")
    (env / "environment.yaml").write_text("apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: local}\n"
                                          "spec:\n  provider: local\n  registries:\n    local: {}\n")
    models = []
    for i in range(60):
        folder = root / "models" / f"model-{i:03d}"
        folder.mkdir(parents=True)
        (folder / "weights.json").write_text(json.dumps({"model": i, "weights": list(range(i, i + 20))}))
        models.append(f"apiVersion: reconciler/v1\nkind: Model\nmetadata:\n  name: model-{i:03d}\n"
                      f"  tags: {{team: vision-{i % 7}, task: classification}}\n"
                      f"spec:\n  path: ../../models/model-{i:03d}\n")
    (env / "models.yaml").write_text("---\n".join(models))
    images = []
    for i in range(50):
        names = ", ".join(f"model-{(i + k * 17) % 60:03d}" for k in range(3))
        images.append(f"apiVersion: reconciler/v1\nkind: Image\nmetadata: {{name: scorer-{i:03d}}}\n"
                      f"spec:\n  entryScript: ../../code/score.py\n  condaFile: ../../code/conda.yaml\n"
                      f"  models: [{names}]\n")
    (env / "images.yaml").write_text("---\n".join(images))
    deployments = []
    for i in range(90):
        modules = "".join(
            f"    module-{k}:\n      image: scorer-{(i + k) % 50:03d}\n"
            f"      env: {{SLOT: '{k}', SITE: 'site-{i:03d}', DESCRIPTION: '{'a long setting value ' * 6}'}}\n"
            for k in range(3))
        deployments.append(
            f"apiVersion: reconciler/v1\nkind: Deployment\nmetadata:\n  name: fleet-{i:03d}\n"
            f"  tags: {{app: fleet, site: site-{i:03d}}}\n"
            f"spec:\n  targetCondition: tags.site='site-{i:03d}'\n  priority: {10 + i % 5}\n  registry: local\n"
            f"  modules:\n{modules}")
    (env / "deployments.yaml").write_text("---\n".join(deployments))


def comment_of(root: Path, state: Path) -> tuple[str, str]:
    """plan.yml's Plan and Write the comment steps: the markdown plan and the comment."""
    plan = run_step("plan.yml", "Plan", root, {"ENV_DIR": ENV_DIR, "IOTHUB_CONNECTION_STRING": ""}, state=state)
    assert plan.code == 0 and plan.outputs["ok"] == "true", plan.err
    comment = run_step("plan.yml", "Write the comment", root, {
        "ENV_NAME": "local", "ENV_DIR": ENV_DIR, "PROVIDER": "local", "VALID": "true", "PLAN_OK": "true",
        "PLAN_CODE": plan.outputs["exit-code"], "HEAD_SHA": "c0ffee0123456789c0ffee0123456789c0ffee01",
        "RUN_URL": "https://github.com/contoso/edge-models/actions/runs/123456789012"})
    assert comment.code == 0, comment.err
    return (root / "plan.md").read_text(), (root / "comment.md").read_text()


def test_the_comment_for_200_changed_resources_fits_in_a_github_comment(tmp_path: Path) -> None:
    root, state = tmp_path / "repo", tmp_path / "state"
    generate_200(root)

    plan, comment = comment_of(root, state)
    assert plan.startswith("### edge-reconciler plan for `local`\n\n"
                           "**Plan: 200 to add, 0 to change, 0 to replace, 0 to destroy.**\n\n"
                           "| Kind | Add | Change | Replace | Destroy |\n|---|---|---|---|---|\n"
                           "| model | 60 | 0 | 0 | 0 |\n| image | 50 | 0 | 0 | 0 |\n| deployment | 90 | 0 | 0 | 0 |\n")
    assert "<details><summary>Changes: 200</summary>" in plan
    assert plan.count("\n| `+` |") == 200  # every change has its row
    assert len(comment) < COMMENT_LIMIT

    applied = reconciler(root, state, ["apply", ENV_DIR, "--auto-approve"])
    assert applied.returncode == 0, applied.stderr
    # Touch every resource: new model files (60 new versions), so 50 new images, so 90 replaces.
    for folder in sorted((root / "models").iterdir()):
        (folder / "weights.json").write_text((folder / "weights.json").read_text() + "\n")
    plan, comment = comment_of(root, state)
    assert "**Plan: 0 to add, 110 to change, 90 to replace, 0 to destroy.**" in plan
    assert "**Replaced or destroyed: 90** (review these first)" in plan
    assert "<details><summary>Other changes: 110</summary>" in plan
    assert plan.count("\n| `-/+` |") == 90 and plan.count("\n| `~` |") == 110
    assert re.search(r"\.\.\. details of \d+ more change\(s\) left out to fit a comment", plan)
    assert len(comment) < COMMENT_LIMIT
    assert (root / "plan.json").exists()


# --- the helper that lists environments -----------------------------------------------------

def environments(root: Path, *args: str, changed: str = "") -> list[dict[str, str]]:
    result = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *args], input=changed, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # one line, for $GITHUB_OUTPUT
    rows: list[dict[str, str]] = json.loads(result.stdout)
    return rows


def test_the_environments_a_change_affects(tmp_path: Path) -> None:
    copy_sample(tmp_path, "local")
    copy_sample(tmp_path, "prod")
    local = {"name": "local", "dir": "environments/local", "provider": "local"}
    prod = {"name": "prod", "dir": "environments/prod", "provider": "azure"}
    assert environments(tmp_path, changed="environments/prod/deployments.yaml\n") == [prod]
    assert environments(tmp_path, changed="README.md\nenvironments/prod/models.yaml\n"
                                          "environments/local/x.yaml\n") == [local, prod]
    assert environments(tmp_path, changed="models/iris/score.py\n") == [local, prod]
    assert environments(tmp_path, changed="schemas/model.schema.json\n") == [local, prod]
    assert environments(tmp_path, changed="docs/gitops.md\nenvironments/README.md\n") == []
    assert environments(tmp_path, changed="environments/deleted/deployments.yaml\n") == []
    assert environments(tmp_path, "--exclude-provider", "local", changed="models/iris/score.py\n") == [prod]
    assert environments(tmp_path, "--all") == [local, prod]
    assert environments(tmp_path, "--all", "--exclude-provider", "local") == [prod]


# --- the workflows' security properties -----------------------------------------------------

PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*v\d+\.\d+\.\d+\s*$")


def all_workflows() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_workflows_exist() -> None:
    assert all_workflows() == ["apply.yml", "ci.yml", "drift.yml", "plan.yml", "rollout.yml"]


@pytest.mark.parametrize("name", ["apply.yml", "ci.yml", "drift.yml", "plan.yml", "rollout.yml"])
def test_workflow_security(name: str) -> None:
    data = workflow(name)
    assert data["permissions"] == {}, "top-level permissions must be empty; grant per job"
    for job_id, job in data["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{job_id}: explicit job permissions"
        assert all(v in ("read", "write", "none") for v in permissions.values())
        uses = [s["uses"] for s in job.get("steps", []) if "uses" in s]
        for action in uses:
            local = action == "./"  # this repository's action, from the same checkout
            assert local or PINNED.match(action), f"{job_id}: {action} is not pinned to a full commit SHA"
        logs_in = any(a.startswith("azure/login@") for a in uses)
        assert (permissions.get("id-token") == "write") == logs_in, f"{job_id}: id-token only to sign in to Azure"
        for s in job.get("steps", []):
            if s.get("uses", "").startswith("actions/checkout@"):
                assert s["with"]["persist-credentials"] is False, f"{job_id}: do not keep the token in .git"
            if "run" in s:
                assert "${{" not in s["run"], f"{job_id}: pass expressions through env:, never into a script"
    text = (WORKFLOWS / name).read_text()
    lines = [line for line in text.splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert lines
    for line in lines:
        if re.match(r"\s*(- )?uses: \./(\s|$)", line):
            continue
        assert VERSION_COMMENT.search(line), f"give the version in a comment: {line.strip()}"
    assert "password" not in text.lower() and "creds:" not in text


def test_each_action_is_pinned_to_one_commit_across_workflows() -> None:
    pins: dict[str, set[str]] = {}
    for name in all_workflows():
        for line in (WORKFLOWS / name).read_text().splitlines():
            match = re.search(r"uses:\s*([^@\s]+)@(\S+)\s+#\s*(\S+)", line)
            if match:
                pins.setdefault(match.group(1), set()).add(f"{match.group(2)} {match.group(3)}")
    assert all(len(p) == 1 for p in pins.values()), pins


def test_apply_runs_per_environment_behind_a_github_environment_and_never_cancels() -> None:
    data = workflow("apply.yml")
    assert triggers(data)["push"]["branches"] == ["main"]
    concurrency = data.get("concurrency")
    assert concurrency is None or concurrency.get("cancel-in-progress") is False
    job = data["jobs"]["apply"]
    assert job["environment"] == "${{ matrix.name }}"
    assert job["concurrency"] == {"group": "apply-${{ matrix.name }}", "cancel-in-progress": False}
    assert job["strategy"]["fail-fast"] is False
    assert job["permissions"] == {"contents": "read", "id-token": "write", "actions": "read", "pull-requests": "read"}


def test_plan_and_apply_agree_on_the_artifact() -> None:
    plan = workflow("plan.yml")
    # Every pull request runs it (environments.py picks the environments from the paths),
    # so the required "plan status" check always reports.
    assert triggers(plan) == {"pull_request": None}
    status = plan["jobs"]["status"]
    assert status["name"] == "plan status" and status["needs"] == ["environments", "plan"]
    assert status["if"] == "${{ !cancelled() }}"
    upload = step("plan.yml", "Upload the saved plan")
    assert upload["with"]["name"] == "plan-${{ matrix.name }}"
    assert "plan.json" in upload["with"]["path"]
    sticky = step("plan.yml", "Comment on the pull request")
    assert sticky["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert "${{ matrix.name }}" in sticky["with"]["header"]
    download = step("apply.yml", "Download the reviewed plan")["run"]
    assert '--name "plan-$ENV_NAME" --dir reviewed-plan' in download
    assert "--workflow plan.yml" in download
    assert ["apply", "reviewed-plan/plan.json"] in reconciler_commands("apply.yml")


@pytest.mark.parametrize(("listed", "planned", "passes"), [
    ("success", "success", True), ("success", "skipped", True), ("success", "failure", False),
    ("failure", "skipped", False), ("success", "cancelled", False)])
def test_plan_status_passes_only_when_every_affected_environment_planned(
        tmp_path: Path, listed: str, planned: str, passes: bool) -> None:
    (tmp_path / "work").mkdir()
    result = run_step("plan.yml", "Every affected environment planned", tmp_path / "work",
                      {"LISTED": listed, "PLANNED": planned})
    assert (result.code == 0) == passes


def test_drift_runs_nightly_and_by_hand() -> None:
    on = triggers(workflow("drift.yml"))
    assert "schedule" in on and "workflow_dispatch" in on
    assert 'title="Drift in $ENV_NAME"' in step("drift.yml", ISSUE_STEP)["run"]


def test_rollout_runs_every_15_minutes_and_by_hand_as_the_one_writer_of_its_environment() -> None:
    data = workflow("rollout.yml")
    on = triggers(data)
    assert on["schedule"] == [{"cron": "*/15 * * * *"}] and "workflow_dispatch" in on
    job = data["jobs"]["rollout"]
    apply_job = workflow("apply.yml")["jobs"]["apply"]
    assert job["environment"] == apply_job["environment"]
    assert job["concurrency"] == apply_job["concurrency"]  # never two writers on one environment
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert command("rollout.yml", "apply") == ["apply", ENV_DIR, "--rollouts-only", "--auto-approve"]


ROLLOUT = """  rollout:
    rings:
      - name: canary
        targetCondition: "tags.site='b'"
        soak: 30m
"""


def test_the_rollout_step_advances_a_rollout_and_changes_nothing_else(repo: Repo) -> None:
    repo.add_devices()
    assert repo.run(["apply", ENV_DIR, "--auto-approve"]).returncode == 0
    repo.edit(f"{ENV_DIR}/deployments.yaml", "MODEL_NAME: iris-classifier\n", "MODEL_NAME: iris-v2\n")
    repo.edit(f"{ENV_DIR}/deployments.yaml", "  routes:\n", ROLLOUT + "  routes:\n")
    os.environ["RECONCILER_NOW"] = "2026-11-28T10:00:00Z"
    try:
        # The rollout workflow does not start new content: that is apply.yml's job, on merge.
        idle = repo.run(command("rollout.yml", "apply"))
        assert idle.returncode == 0, idle.stderr
        assert "Rollout steps taken: 0." in idle.stdout
        assert repo.run(command("apply.yml", "apply", having=("--auto-approve",))).returncode == 0

        os.environ["RECONCILER_NOW"] = "2026-11-28T10:31:00Z"
        repo.edit(f"{ENV_DIR}/models.yaml", "task: classification", "task: flowers")  # not the rollout's business
        taken = repo.run(command("rollout.yml", "apply"))
        assert taken.returncode == 0, taken.stderr
        assert "> deployment/iris-base: ring canary -> all devices (canary: 1/1 succeeded" in taken.stdout
        assert "Rollout steps taken: 1." in taken.stdout
        left = repo.run(["plan", ENV_DIR, "--format", "json"])
        assert [c["resource"] for c in json.loads(left.stdout)["changes"]] == ["model/iris-classifier"]
    finally:
        del os.environ["RECONCILER_NOW"]


def test_ci_runs_the_projects_own_entry_point() -> None:
    data = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(triggers(data))
    assert [s["run"] for _, s in steps("ci.yml") if "run" in s] == ["bash .ci/run"]


# --- the action (action.yml) ----------------------------------------------------------------

def test_the_action_is_a_composite_with_the_promised_inputs(tmp_path: Path) -> None:
    data = yaml.safe_load(ACTION.read_text())
    assert set(data["inputs"]) == {"command", "environment", "args", "version"}
    assert all(not i.get("required") for i in data["inputs"].values())
    assert set(data["outputs"]) == {"exit-code", "report"}
    assert data["runs"]["using"] == "composite"
    for s in data["runs"]["steps"]:
        if "uses" in s:
            assert PINNED.match(s["uses"]), f"{s['uses']} is not pinned to a full commit SHA"
        if "run" in s:
            assert s["shell"] == "bash"
            assert "${{" not in s["run"], "pass inputs through env:, never into a script"
    scripts = [ACTION.parent / "scripts" / "github-action.sh"]
    for index, s in enumerate(data["runs"]["steps"]):
        if "run" in s and "github-action.sh" not in s["run"]:
            inline = tmp_path / f"step-{index}.sh"
            inline.write_text("#!/usr/bin/env bash\n" + s["run"])
            scripts.append(inline)
    shellcheck = subprocess.run([str(Path(sys.executable).parent / "shellcheck"), *map(str, scripts)],
                                capture_output=True, text=True)
    assert shellcheck.returncode == 0, shellcheck.stdout


def test_the_workflows_use_the_action_to_install_and_where_a_step_is_only_a_command() -> None:
    install = step("drift.yml", "Install edge-reconciler")
    assert install["uses"] == "./" and "with" not in install
    # plan and apply run the behaviour samples: they install the `behaviour` extra (uv), which the action
    # does not take.
    for name in ("plan.yml", "apply.yml"):
        assert step(name, "Install edge-reconciler")["run"] == "python -m pip install '.[behaviour]'"
    rollout = step("rollout.yml", "Take the rollout steps that are due")
    assert rollout["uses"] == "./"
    assert "IOTHUB_CONNECTION_STRING" in rollout["env"]


def test_the_action_refuses_a_version_that_is_not_one(tmp_path: Path) -> None:
    install = yaml.safe_load(ACTION.read_text())["runs"]["steps"][0]
    (tmp_path / "install.sh").write_text(install["run"])
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "install.sh")],
                            env={**os.environ, "VERSION": "1.0 --index-url https://example.com", "RUNNER_TEMP":
                                 str(tmp_path)}, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ("::error::version must be a version number such as 0.1.0 (or empty: the action's own "
                             "source), not: 1.0 --index-url https://example.com\n")


@pytest.mark.parametrize(("with_", "argv"), [
    ({"command": "validate", "environment": ENV_DIR}, [["validate", ENV_DIR, "--format", "github"]]),
    ({"command": "plan", "environment": ENV_DIR, "args": "--out plan.json --detailed-exitcode"},
     [["plan", ENV_DIR, "--format", "markdown", "--out", "plan.json", "--detailed-exitcode"]]),
    ({"command": "plan", "environment": ENV_DIR, "args": "--format json"}, [["plan", ENV_DIR, "--format", "json"]]),
    ({"command": "drift", "environment": ENV_DIR}, [["drift", ENV_DIR, "--format", "markdown"]]),
    ({"command": "where", "environment": ENV_DIR, "args": "model 'iris classifier:2' --devices"},
     [["where", ENV_DIR, "model", "iris classifier:2", "--devices"]]),
    ({"command": "apply", "args": "reviewed-plan/plan.json"}, [["apply", "reviewed-plan/plan.json"]]),
])
def test_the_commands_the_action_runs(with_: dict[str, str], argv: list[list[str]]) -> None:
    assert action_commands(with_) == argv


def test_the_action_annotates_invalid_specs_and_summarises_them(repo: Repo) -> None:
    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: high ")
    result, _ = run_action({"command": "validate", "environment": ENV_DIR}, repo.root, state=repo.state)
    assert result.code == 1
    assert result.outputs["exit-code"] == "1"
    assert result.out.startswith("::error file=environments/local/deployments.yaml,line=23,col=13::"
                                 "Deployment/iris-base: spec.priority: must be an integer (got string 'high')\n")
    assert result.summary.startswith("### reconciler validate `environments/local`: failed (exit code 1)\n\n"
                                     "The problems are annotated on their lines (*Files changed* tab):\n\n````text\n"
                                     "environments/local/deployments.yaml:23:13: Deployment/iris-base: spec.priority")

    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: high ", "priority: 10 ")
    valid, _ = run_action({"command": "validate", "environment": ENV_DIR}, repo.root, state=repo.state)
    assert valid.code == 0, valid.err
    assert valid.summary == "### reconciler validate `environments/local`: the specs are valid\n"


def test_the_action_plans_into_the_summary_and_changes_do_not_fail_the_step(repo: Repo) -> None:
    with_ = {"command": "plan", "environment": ENV_DIR, "args": "--out plan.json --detailed-exitcode"}
    result, _ = run_action(with_, repo.root, state=repo.state)
    assert result.code == 0, result.err
    assert result.outputs["exit-code"] == "2"
    report = Path(result.outputs["report"]).read_text()
    assert report.startswith("### edge-reconciler plan for `local`\n")
    assert result.summary == report
    assert (repo.root / "plan.json").exists()
    # The report is not echoed into the log, and nothing printed may act as a workflow command.
    assert "edge-reconciler plan for" not in result.out
    token = re.match(r"::stop-commands::(\S+)\n", result.out)
    assert token and result.out.endswith(f"::{token.group(1)}::\n")


def test_the_action_takes_the_rollout_steps_as_rollout_yml_asks(repo: Repo) -> None:
    repo.add_devices()
    with_ = step("rollout.yml", "Take the rollout steps that are due")["with"]
    result, _ = run_action(with_, repo.root, state=repo.state)
    assert result.code == 0, result.err
    assert result.summary.startswith("### reconciler apply `environments/local`: succeeded\n\n````text\n")
    assert "Rollout steps taken: 0." in result.summary

    repo.edit(f"{ENV_DIR}/deployments.yaml", "priority: 10 ", "priority: high ")
    failed, _ = run_action(with_, repo.root, state=repo.state)
    assert failed.code == 1
    assert failed.outputs["exit-code"] == "1"
    assert failed.summary.startswith("### reconciler apply `environments/local`: failed (exit code 1)\n")
    assert "spec.priority: must be an integer" in failed.summary
