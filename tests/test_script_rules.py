"""One statement of the rules every generated script obeys, checked the same way for both brains."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities import script_rules
from activities.column_plan import profile_for_goal
from activities.llm.agents import check_code
from activities.offline import plan_research, write_eda_code, write_training_code
from activities.offline import training_code as training_writer
from tests.sample_data import make_churn
from workflows.models import AgentContext, DatasetInfo


@pytest.fixture(scope="module")
def churn_context(tmp_path_factory: pytest.TempPathFactory) -> AgentContext:
    path = tmp_path_factory.mktemp("rules") / "churn.csv"
    make_churn(rows=400).to_csv(path, index=False)
    goal = "build a customer churn prediction model"
    profile = profile_for_goal(path, goal)
    info = DatasetInfo(
        source_url=str(path),
        file_path=str(path),
        size_bytes=path.stat().st_size,
        sha256="0" * 64,
        profile=profile,
    )
    return AgentContext(
        workflow_id="wf-rules", user_goal=goal, dataset=info, plan=plan_research(goal, profile)
    )


def test_offline_scripts_obey_every_rule_required_or_not(churn_context: AgentContext):
    eda = write_eda_code(churn_context).code
    training = write_training_code(churn_context).code
    assert script_rules.check_script(eda, "eda") == []
    assert script_rules.check_script(training, "training") == []
    # The LLM path's check is the same checker: the offline scripts pass it too.
    check_code(eda, "eda")
    check_code(training, "training")


# Each rule, and an edit of a good training script that breaks exactly that rule.
BREAKS = [
    ("syntax", lambda code: code + "\ndef broken(:\n"),
    ("imports", lambda code: "import xgboost\n" + code),
    (
        "dataset_input",
        lambda code: code.replace(
            'DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")',
            'DATASET_PATH = "/data/churn.csv"',
        ),
    ),
    (
        "output_dir",
        lambda code: code.replace(
            'OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "."))', 'OUTPUT_DIR = Path("/tmp")'
        ),
    ),
    ("output:metrics.json", lambda code: code.replace('"metrics.json"', '"scores.json"')),
    ("output:model.joblib", lambda code: code.replace('"model.joblib"', '"model.pkl"')),
    ("output:input_schema.json", lambda code: code.replace('"input_schema.json"', '"cols.json"')),
    ("output:model_card.json", lambda code: code.replace('"model_card.json"', '"card.json"')),
    ("plots", lambda code: code.replace("savefig", "draw")),
]


@pytest.mark.parametrize(("rule", "brk"), BREAKS, ids=[rule for rule, _ in BREAKS])
def test_a_script_breaking_a_rule_fails_it(rule: str, brk, churn_context: AgentContext):  # type: ignore[no-untyped-def]
    good = write_training_code(churn_context).code
    broken = brk(good)
    assert broken != good, "the edit did not change the script"
    breaches = script_rules.check_script(broken, "training")
    assert [b.rule for b in breaches] == [rule]
    [breach] = breaches
    required = rule not in {"output:model_card.json", "plots"}
    assert breach.required == required
    with pytest.raises(ValueError, match="training script"):
        script_rules.enforce(broken, "training")
    # The LLM path feeds required breaches back to the model, and lets the others through.
    if required:
        with pytest.raises(ValueError, match=r"^code: "):
            check_code(broken, "training")
    else:
        check_code(broken, "training")


def test_eda_scripts_must_write_their_summary(churn_context: AgentContext):
    eda = write_eda_code(churn_context).code
    broken = eda.replace('"eda_summary.json"', '"summary.json"')
    broken = broken.replace("'eda_summary.json'", "'summary.json'")
    assert [b.rule for b in script_rules.check_script(broken, "eda")] == ["output:eda_summary.json"]


@pytest.mark.parametrize(
    "reads",
    [
        'os.environ["DATASET_PATH"]',
        'os.environ.get("DATASET_PATH")',
        'os.getenv("DATASET_PATH", "dataset.csv")',
    ],
)
def test_every_usual_way_of_reading_the_environment_counts(reads: str):
    code = (
        "import os\nimport json\n"
        f"path = {reads}\nout = os.environ['OUTPUT_DIR']\n"
        "json.dump({}, open(os.path.join(out, 'eda_summary.json'), 'w'))\n"
    )
    assert [b.rule for b in script_rules.check_script(code, "eda")] == ["plots"]
    # Naming the variable in a comment or a string is not reading it.
    fake = code.replace(reads, '"DATASET_PATH"')
    assert "dataset_input" in [b.rule for b in script_rules.check_script(fake, "eda")]


def test_the_offline_writer_refuses_to_hand_over_a_script_that_breaks_a_rule(
    churn_context: AgentContext, monkeypatch: pytest.MonkeyPatch
):
    real = training_writer.template_source

    def with_forbidden_import(name: str, plan: str | None = None) -> str:
        source = real(name, plan)
        return source.replace("import json\n", "import json\nimport requests\n", 1)

    monkeypatch.setattr(training_writer, "template_source", with_forbidden_import)
    with pytest.raises(ValueError, match="requests"):
        write_training_code(churn_context)


def test_the_prompts_state_the_same_allowed_packages():
    from activities.llm import prompts

    assert prompts.ALLOWED_PACKAGES == script_rules.ALLOWED_PACKAGES
    for package in ("pandas", "numpy", "joblib", "matplotlib", "cloudpickle"):
        assert package in prompts.CODE_CONTRACT


def test_templates_are_modules_the_checkers_see():
    """The generated code's body lives in real modules (ruff and mypy run over them)."""
    folder = Path(training_writer.__file__).parent / "templates"
    for name in ("training", "eda", "json_values", "raw_rows", "plots", "model_package"):
        assert (folder / f"{name}.py").is_file(), name
    assert len(Path(training_writer.__file__).read_text().splitlines()) < 400
