"""Task spec loading, validation, checks, hashing and the knob/region helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.knobs import format_value, read_knob, regions_of, set_knob
from tasks.spec import Knob, TaskSpecError, builtin_tasks, checkout_env_var, load_task
from tasks.spec_check import check_task

TOML = '''\
[task]
name = "toy"
version = "1"
description = "a toy task"
metric = "loss"
direction = "min"
recipe_dir = "recipe"
recipe_files = ["train.py"]
evaluator_files = ["evaluator/evaluate.py", "evaluator/model.py"]
stage_into_workspace = ["evaluator/model.py"]
artifact = "model.bin"

[commands]
train = "{python} train.py"
evaluate = "{python} {eval_dir}/evaluate.py --runs {runs} --result {result}"

[budgets]
preflight_s = 10
train_s = 60
eval_s = 30

[gates]
artifact_max_bytes = 100_000

[noise]
min_delta = 0.01
sd = 0.004
reruns = [1.0, 1.01, 0.995]

[resources]
cpu_threads = 2

[[data]]
name = "corpus"
package = "corpus"
version = "1.0"
filename = "corpus-1.0.tar.gz"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[surfaces.opt]
description = "optimizer"
files = ["train.py"]
regions = ["opt", "opt_code"]

[[surfaces.opt.knobs]]
name = "LR"
file = "train.py"
type = "float"
range = [1e-4, 1e-1]
scale = "log"

[[surfaces.opt.knobs]]
name = "STEPS"
file = "train.py"
type = "int"
range = [10, 1000]

[[surfaces.opt.knobs]]
name = "ACT"
file = "train.py"
type = "choice"
values = ["gelu", "relu"]

[surfaces.arch]
files = ["train.py"]
regions = ["arch"]

[[surfaces.arch.knobs]]
name = "TIED"
file = "train.py"
type = "bool"

[[specialists]]
name = "opt"
surface = "opt"
preamble = "You own the optimizer."

[[patches]]
name = "clip"
surface = "opt"
file = "train.py"
find = "    pass\\n"
replace = "    clip()\\n"
hypothesis = "clipping helps"
'''

RECIPE = '''\
"""toy recipe"""

# region: arch
TIED = True
# endregion

# region: opt
LR = 1e-3  # learning rate
STEPS = 100
ACT = "gelu"  # gelu | relu
# endregion


# region: opt_code
def step():
    pass
# endregion


def clip():
    return LR
'''


def make_task(root: Path, toml: str = TOML, recipe: str = RECIPE) -> Path:
    (root / "recipe").mkdir(parents=True)
    (root / "evaluator").mkdir()
    (root / "task.toml").write_text(toml)
    (root / "recipe" / "train.py").write_text(recipe)
    (root / "evaluator" / "evaluate.py").write_text("print('eval')\n")
    (root / "evaluator" / "model.py").write_text("MODEL = 1\n")
    return root


def test_the_toy_task_loads_and_checks(tmp_path):
    spec = load_task(make_task(tmp_path / "toy"))
    assert spec.name == "toy" and spec.direction == "min"
    assert [k.name for k in spec.surfaces["opt"].knobs] == ["LR", "STEPS", "ACT"]
    assert spec.surfaces["opt"].knobs[0].range == (1e-4, 1e-1)
    assert spec.objective.threshold == pytest.approx(0.01)
    assert spec.specialist("opt").surface == "opt"
    results = check_task(spec)
    failed = [r for r in results if not r.ok]
    # the placeholder data sha256 is 64 hex digits, so everything passes
    assert not failed, failed
    assert load_task(tmp_path / "toy" / "task.toml") == spec


def test_a_spec_written_before_bound_loads_time_bounded_and_check_suggests_the_key(tmp_path):
    spec = load_task(make_task(tmp_path / "old"))  # TOML has no [budgets] bound: written before it existed
    b = spec.budgets
    assert (b.bound, b.work_unit, b.bound_declared, b.work_bounded, b.train_s) == ("time", "", False, False, 60)
    results = {r.name: r for r in check_task(spec)}
    hint = results["run bound"]
    assert hint.ok and hint.hint and 'bound = "work"' in hint.detail and "as before" in hint.detail
    assert all(r.ok for r in results.values())  # a hint, not a failure
    work = load_task(make_task(tmp_path / "new", sub("train_s = 60", 'train_s = 60\nbound = "work"')))
    assert (work.budgets.bound, work.budgets.work_unit, work.budgets.bound_declared) == ("work", "steps", True)
    assert "run bound" not in {r.name for r in check_task(work)}
    epochs = load_task(make_task(tmp_path / "ep", sub("train_s = 60", 'train_s = 60\nbound = "work"\n'
                                                      'work_unit = "epochs"')))
    assert epochs.budgets.work_unit == "epochs"


def test_the_mini_tasks_are_bounded_by_work_and_the_real_ones_by_time():
    got = {n: (load_task(n).budgets.bound, load_task(n).budgets.work_unit) for n in builtin_tasks()}
    assert got == {"golf-mini": ("work", "steps"), "nanochat-mini": ("work", "steps"),
                   "airbench-mini": ("work", "epochs"), "parameter-golf": ("time", ""), "nanochat-d12": ("time", ""),
                   "airbench96": ("time", ""), "tick": ("time", "")}


def test_builtin_names_resolve():
    names = builtin_tasks()
    assert "golf-mini" in names
    assert all(n == n.lower() and "_" not in n for n in names)


@pytest.mark.parametrize("name", builtin_tasks())
def test_every_builtin_task_loads_and_checks(name, monkeypatch):
    monkeypatch.delenv(checkout_env_var(name), raising=False)
    spec = load_task(name)
    assert spec.name == name
    failed = [r for r in check_task(spec) if not r.ok]
    if spec.recipe_dir == "{checkout}" and spec.recipe_root is None:
        # a full-scale task whose checkout is not configured here: only that is reported
        assert [r.name for r in failed] == ["recipe checkout"], failed
        assert checkout_env_var(name) in failed[0].detail
        return
    assert not failed, failed
    assert len(spec.content_sha()) == 64 and len(spec.evaluator_sha()) == 64


def test_checkout_tasks_resolve_from_the_environment_or_the_spec(tmp_path, monkeypatch):
    toml = sub('recipe_dir = "recipe"', 'recipe_dir = "{checkout}"')
    root = make_task(tmp_path / "t", toml)
    clone = tmp_path / "clone"
    shutil.copytree(root / "recipe", clone)
    monkeypatch.delenv("ARLEDGER_CHECKOUT_TOY", raising=False)
    spec = load_task(root)  # loads without a checkout; file-level checks wait
    assert spec.recipe_root is None
    with pytest.raises(TaskSpecError, match="ARLEDGER_CHECKOUT_TOY"):
        spec.recipe_path  # noqa: B018
    assert [r.name for r in check_task(spec) if not r.ok] == ["recipe checkout"]
    monkeypatch.setenv("ARLEDGER_CHECKOUT_TOY", str(clone))
    spec = load_task(root)
    assert spec.recipe_path == clone.resolve()
    assert not [r for r in check_task(spec) if not r.ok]
    sha = spec.content_sha()
    monkeypatch.delenv("ARLEDGER_CHECKOUT_TOY")
    (root / "task.toml").write_text(sub('artifact = "model.bin"', 'artifact = "model.bin"\ncheckout = "../clone"', toml))
    with_key = load_task(root)
    assert with_key.recipe_path == clone.resolve()
    monkeypatch.setenv("ARLEDGER_CHECKOUT_TOY", str(tmp_path / "nowhere"))
    with pytest.raises(TaskSpecError, match="ARLEDGER_CHECKOUT_TOY.*not a directory|not a directory"):
        load_task(root)
    # the hash names checkout files by their place in the checkout, not by where it lives
    other = tmp_path / "elsewhere"
    shutil.copytree(clone, other)
    monkeypatch.setenv("ARLEDGER_CHECKOUT_TOY", str(other))
    (root / "task.toml").write_text(toml)
    assert load_task(root).content_sha() == sha


def sub(old: str, new: str, text: str = TOML) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BAD_SPECS = [
    # (id, toml, recipe, key path in the message, a fragment of the message)
    ("unknown key", sub('metric = "loss"', 'metric = "loss"\ncolour = "red"'), RECIPE,
     "task.colour", "not a known key"),
    ("unknown table", TOML + "\n[extras]\nx = 1\n", RECIPE, "extras", "not a known key"),
    ("missing key", sub('metric = "loss"\n', ""), RECIPE, "task.metric", "is missing"),
    ("missing table", sub("[budgets]\npreflight_s = 10\ntrain_s = 60\neval_s = 30\n", ""), RECIPE,
     "budgets", "is missing"),
    ("wrong type", sub("train_s = 60", 'train_s = "60"'), RECIPE, "budgets.train_s", "must be a number"),
    ("negative budget", sub("train_s = 60", "train_s = -5"), RECIPE, "budgets.train_s", "must be positive"),
    ("bool for int", sub("cpu_threads = 2", "cpu_threads = true"), RECIPE, "resources.cpu_threads",
     "must be an int"),
    ("bad direction", sub('direction = "min"', 'direction = "lower"'), RECIPE, "task.direction",
     'must be "min" or "max"'),
    ("bad task name", sub('name = "toy"', 'name = "Toy Task"'), RECIPE, "task.name", "not a valid task name"),
    ("reversed range", sub("range = [1e-4, 1e-1]", "range = [1e-1, 1e-4]"), RECIPE,
     "surfaces.opt.knobs[0].range", "not below upper bound"),
    ("log range at zero", sub("range = [1e-4, 1e-1]", "range = [0.0, 1e-1]"), RECIPE,
     "surfaces.opt.knobs[0].range", "positive lower bound"),
    ("range of three", sub("range = [10, 1000]", "range = [10, 100, 1000]"), RECIPE,
     "surfaces.opt.knobs[1].range", "exactly two numbers"),
    ("float bounds on int knob", sub("range = [10, 1000]", "range = [10.5, 1000]"), RECIPE,
     "surfaces.opt.knobs[1].range", "int bounds"),
    ("missing range", sub("range = [10, 1000]\n", ""), RECIPE, "surfaces.opt.knobs[1].range", "is missing"),
    ("bad knob type", sub('type = "int"', 'type = "integer"'), RECIPE, "surfaces.opt.knobs[1].type",
     "unknown knob type"),
    ("choice without values", sub('values = ["gelu", "relu"]\n', ""), RECIPE,
     "surfaces.opt.knobs[2].values", "is missing"),
    ("range on a bool", sub('type = "bool"', 'type = "bool"\nrange = [0, 1]'), RECIPE,
     "surfaces.arch.knobs[0].range", "takes no range"),
    ("knob not in file", sub('name = "STEPS"', 'name = "EPOCHS"'), RECIPE, "surfaces.opt.knobs[1].name",
     "no module-level assignment 'EPOCHS = <literal>'"),
    ("knob not a literal", TOML, sub("STEPS = 100", "STEPS = 10 * 10", RECIPE), "surfaces.opt.knobs[1].name",
     "not a single literal"),
    ("knob assigned twice", TOML, RECIPE + "STEPS = 200\n", "surfaces.opt.knobs[1].name", "assigned 2 times"),
    ("knob outside its regions", TOML, sub("TIED = True\n# endregion\n", "# endregion\nTIED = True\n", RECIPE),
     "surfaces.arch.knobs[0].name", "outside the surface's regions"),
    ("knob file outside surface", sub('name = "STEPS"\nfile = "train.py"', 'name = "STEPS"\nfile = "util.py"'),
     RECIPE, "surfaces.opt.knobs[1].file", "not one of the files of surface 'opt'"),
    ("surface file not a recipe file", sub('files = ["train.py"]\nregions = ["arch"]',
                                           'files = ["model.py"]\nregions = ["arch"]'), RECIPE,
     "surfaces.arch.files[0]", "not one of the recipe files"),
    ("region markers missing", sub('regions = ["arch"]', 'regions = ["arch", "init"]'), RECIPE,
     "surfaces.arch.regions[1]", "no '# region: init'"),
    ("region never closed", TOML, sub("    pass\n# endregion\n", "    pass\n", RECIPE), "surfaces.opt.regions[0]",
     "never closed"),
    ("regions nested", TOML, sub("# region: opt_code\n", "# region: opt_code\n# region: inner\n", RECIPE),
     "surfaces.opt.regions[0]", "do not nest"),
    ("specialist unknown surface", sub('surface = "opt"\npreamble', 'surface = "optimizer"\npreamble'), RECIPE,
     "specialists[0].surface", "unknown surface 'optimizer'"),
    ("specialist missing preamble", sub('preamble = "You own the optimizer."\n', ""), RECIPE,
     "specialists[0].preamble", "is missing"),
    ("evaluator file in recipe dir", sub('evaluator_files = ["evaluator/evaluate.py", ',
                                         'evaluator_files = ["recipe/evaluate.py", '), RECIPE,
     "task.evaluator_files[0]", "inside the recipe dir"),
    ("staged file not evaluator-owned", sub('stage_into_workspace = ["evaluator/model.py"]',
                                            'stage_into_workspace = ["evaluator/other.py"]'), RECIPE,
     "task.stage_into_workspace[0]", "not one of evaluator_files"),
    ("escaping path", sub('recipe_dir = "recipe"', 'recipe_dir = "../recipe"'), RECIPE, "task.recipe_dir",
     "relative path inside the task directory"),
    ("recipe file missing", sub('recipe_files = ["train.py"]', 'recipe_files = ["train.py", "extra.py"]'),
     RECIPE, "task.recipe_files", "does not exist"),
    ("patch unknown surface", sub('name = "clip"\nsurface = "opt"', 'name = "clip"\nsurface = "sched"'), RECIPE,
     "patches[0].surface", "unknown surface 'sched'"),
    ("accuracy gate half-given", sub("artifact_max_bytes = 100_000", 'accuracy_metric = "acc"'), RECIPE,
     "gates.accuracy_min", "needs both"),
    ("toml syntax", sub('direction = "min"', "direction = min"), RECIPE, "", "not valid TOML"),
    ("unknown bound", sub("train_s = 60", 'train_s = 60\nbound = "steps"'), RECIPE, "budgets.bound",
     'must be "work" or "time"'),
    ("work unit on a time bound", sub("train_s = 60", 'train_s = 60\nbound = "time"\nwork_unit = "steps"'), RECIPE,
     "budgets.work_unit", "bounded by time"),
    ("unknown work unit", sub("train_s = 60", 'train_s = 60\nbound = "work"\nwork_unit = "batches"'), RECIPE,
     "budgets.work_unit", "unknown unit 'batches'"),
]


@pytest.mark.parametrize("case", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_malformed_specs_give_one_specific_message(tmp_path, case):
    _id, toml, recipe, key, fragment = case
    root = make_task(tmp_path / "t", toml, recipe)
    with pytest.raises(TaskSpecError) as err:
        load_task(root)
    msg = str(err.value)
    assert str(root / "task.toml") in msg
    if key:
        assert f": {key}: " in msg, msg
        assert err.value.key == key
    assert fragment in msg, msg
    assert "; fix: " in msg and len(msg.splitlines()) == 1
    # check_task reports the same message as one failed check instead of raising
    results = check_task(root)
    assert [(r.name, r.ok) for r in results] == [("spec", False)]
    assert results[0].detail == msg


def test_unknown_task_name_lists_the_builtins():
    with pytest.raises(TaskSpecError, match="golf-mini"):
        load_task("no-such-task")


CHECK_FAILURES = [
    ("knob value out of range", TOML, sub("LR = 1e-3", "LR = 5.0", RECIPE), "knob opt.LR", "outside the range"),
    ("knob value wrong type", TOML, sub("STEPS = 100", "STEPS = 100.5", RECIPE), "knob opt.STEPS", "not an int"),
    ("choice value unknown", TOML, sub('ACT = "gelu"', 'ACT = "tanh"', RECIPE), "knob opt.ACT", "not one of"),
    ("recipe does not compile", TOML, RECIPE + "def broken(:\n", "recipe compiles", "line"),
    ("data sha256 not hex", sub('sha256 = "' + "0" * 64, 'sha256 = "abc'), RECIPE, "data sha256", "64"),
    ("patch does not apply", sub('find = "    pass\\n"', 'find = "    return 0\\n"'), RECIPE, "patch clip",
     "occurs 0 times"),
    ("patch outside its surface regions", sub('find = "    pass\\n"', 'find = "    return LR\\n"'), RECIPE,
     "patch clip", "outside surface 'opt'"),
    ("code over the cap", sub("artifact_max_bytes = 100_000", "artifact_max_bytes = 100"), RECIPE,
     "code bytes under the artifact cap", "cap 100"),
]


@pytest.mark.parametrize("case", CHECK_FAILURES, ids=[c[0] for c in CHECK_FAILURES])
def test_check_task_reports_each_problem(tmp_path, case):
    _id, toml, recipe, check, fragment = case
    root = make_task(tmp_path / "t", toml, recipe)
    results = {r.name: r for r in check_task(root)}
    assert not results[check].ok, results[check]
    assert fragment in results[check].detail
    assert [r.name for r in results.values() if not r.ok] == [check]


def test_check_task_reports_missing_evaluator_files(tmp_path):
    root = make_task(tmp_path / "t")
    (root / "evaluator" / "model.py").unlink()
    results = {r.name: r for r in check_task(root)}
    assert not results["evaluator files exist"].ok
    assert "evaluator/model.py" in results["evaluator files exist"].detail


def test_content_sha_is_stable_and_covers_spec_recipe_and_evaluator(tmp_path):
    a = load_task(make_task(tmp_path / "a"))
    b = load_task(make_task(tmp_path / "b"))
    assert a.content_sha() == b.content_sha()  # same content, different place
    assert a.evaluator_sha() == b.evaluator_sha()
    (tmp_path / "b" / "recipe" / "notes.txt").write_text("x")
    assert load_task(tmp_path / "b").content_sha() != a.content_sha()
    assert load_task(tmp_path / "b").evaluator_sha() == a.evaluator_sha()
    (tmp_path / "a" / "evaluator" / "evaluate.py").write_text("print('other')\n")
    a2 = load_task(tmp_path / "a")
    assert a2.evaluator_sha() != b.evaluator_sha()
    (tmp_path / "a" / "recipe" / "__pycache__").mkdir()
    (tmp_path / "a" / "recipe" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"junk")
    assert load_task(tmp_path / "a").content_sha() == a2.content_sha()


# ---------------------------------------------------------------------------------------------- knobs


def test_read_knob_reads_literals():
    assert read_knob(RECIPE, "LR") == 1e-3
    assert read_knob(RECIPE, "STEPS") == 100
    assert read_knob(RECIPE, "ACT") == "gelu"
    assert read_knob(RECIPE, "TIED") is True
    assert read_knob("X: float = -2.5e-3  # c\n", "X") == -2.5e-3
    assert read_knob("N = 1_000_000\n", "N") == 1_000_000
    with pytest.raises(KeyError):
        read_knob(RECIPE, "MISSING")
    with pytest.raises(KeyError):
        read_knob("    LR = 1\n", "LR")  # not module level


def test_set_knob_rewrites_only_that_line_and_keeps_the_comment():
    new = set_knob(RECIPE, "LR", 3e-3)
    assert "LR = 0.003  # learning rate\n" in new
    old_lines, new_lines = RECIPE.splitlines(), new.splitlines()
    assert [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b] == [7]
    assert 'ACT = "relu"  # gelu | relu' in set_knob(RECIPE, "ACT", "relu").replace("'", '"')
    assert "TIED = False\n" in set_knob(RECIPE, "TIED", False)
    assert "STEPS = 250\n" in set_knob(RECIPE, "STEPS", 250)
    assert "X = '#'  # hash\n" == set_knob("X = 'a'  # hash\n", "X", "#")


def test_set_knob_with_a_knob_checks_and_coerces():
    lr = Knob("LR", "train.py", "float", range=(1e-4, 1e-1), scale="log")
    with pytest.raises(ValueError, match="outside the range"):
        set_knob(RECIPE, lr, 1.0)
    steps = Knob("STEPS", "train.py", "int", range=(10, 1000))
    with pytest.raises(ValueError, match="not an int"):
        set_knob(RECIPE, steps, 12.5)
    # an int handed to a float knob is written as a float, so it reads back as one
    lr_wide = Knob("LR", "train.py", "float", range=(0.0, 10.0))
    assert read_knob(set_knob(RECIPE, lr_wide, 2), "LR") == 2.0
    assert isinstance(read_knob(set_knob(RECIPE, lr_wide, 2), "LR"), float)


@pytest.mark.parametrize("value,text", [
    (0.001, "0.001"), (3e-4, "0.0003"), (1e-5, "1e-5"), (2.0, "2.0"), (0.1 + 0.2, "0.3"),
    (1e-4 * 3, "0.0003"), (123456.0, "123456.0"), (1.5e20, "1.5e20"), (100, "100"), (1_000_000, "1_000_000"),
    (True, "True"), ("lzma", "'lzma'"), (-0.25, "-0.25"),
])
def test_format_value_is_compact(value, text):
    assert format_value(value) == text


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_set_read_round_trip_floats(value):
    got = read_knob(set_knob(RECIPE, "LR", value), "LR")
    assert isinstance(got, float)
    assert got == pytest.approx(value, rel=1e-5)
    if float(f"{value:.6g}") == value:  # floats with at most 6 significant digits round-trip exactly
        assert got == value


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9))
def test_set_read_round_trip_ints(value):
    assert read_knob(set_knob(RECIPE, "STEPS", value), "STEPS") == value


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
def test_set_read_round_trip_strings(value):
    assert read_knob(set_knob(RECIPE, "ACT", value), "ACT") == value


def test_regions_of():
    assert regions_of(RECIPE) == {"arch": (3, 5), "opt": (7, 11), "opt_code": (14, 17)}
    assert regions_of("x = 1\n") == {}
    for bad, msg in [("# region: a\n", "never closed"), ("# endregion\n", "without an open region"),
                     ("# region: a\n# endregion\n# region: a\n# endregion\n", "defined twice")]:
        with pytest.raises(ValueError, match=msg):
            regions_of(bad)


def test_copy_of_a_builtin_task_dir_loads_by_path(tmp_path):
    src = load_task("golf-mini").root
    shutil.copytree(src, tmp_path / "golf", ignore=shutil.ignore_patterns("__pycache__"))
    spec = load_task(tmp_path / "golf")
    assert spec.name == "golf-mini"
    assert spec.content_sha() == load_task("golf-mini").content_sha()
