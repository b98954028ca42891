"""The Flower integration: captured updates are exactly what the clients computed, attacks on
them do what they do on gradinv's simulation, aggregation is untouched, observations reload,
the example runs. Needs the `flower` extra (flwr 1.41)."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

flwr = pytest.importorskip("flwr")

from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from gradinv import Observation, Protocol, build_model, evaluate, make_attack, observe  # noqa: E402
from gradinv.cli import main  # noqa: E402
from gradinv.errors import GradinvError  # noqa: E402
from gradinv.integrations.flower import (  # noqa: E402
    InProcessGrid,
    LeakageAuditStrategy,
    node_id_of,
    run_inprocess,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (3, 16, 16)
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


class BNNet(nn.Module):
    """A user's model with BatchNorm, so buffers travel in the arrays."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def mlp(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 16 * 16, width), nn.ReLU(), nn.Linear(width, 10)
    )


def bnnet() -> nn.Module:
    torch.manual_seed(0)
    return BNNet()


def partitions(sample_data, n: int, b: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """n disjoint private batches of b photos (different photos, hence labels, per image)."""
    xs, ys = [], []
    for p in range(n):
        idx = [(p * b + i) * 64 + p for i in range(b)]
        xs.append(sample_data.load(idx, 16))
        ys.append(torch.as_tensor(sample_data.labels[idx]))
    return xs, ys


def client_app(new_model, xs, ys) -> ClientApp:
    """An ordinary Flower client: plain SGD over its partition in a fixed order."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:
        p = context.node_config["partition-id"]
        x = (xs[p] - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        y = ys[p]
        cfg = msg.content["config"]
        model = new_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
        b = cfg["batch-size"]
        for _ in range(cfg["local-epochs"]):
            for s in range(0, len(y), b):
                opt.zero_grad()
                F.cross_entropy(model(x[s : s + b]), y[s : s + b]).backward()
                opt.step()
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"num-examples": len(y)}),
            }
        )
        return Message(content=content, reply_to=msg)

    return app


def fedavg(n: int) -> FedAvg:
    return FedAvg(fraction_evaluate=0.0, min_available_nodes=n, min_train_nodes=n)


def audit(tmp_path, new_model, **kw) -> LeakageAuditStrategy:
    kw.setdefault("strategy", fedavg(kw.pop("n", 1)))
    return LeakageAuditStrategy(
        out_dir=str(tmp_path / "audit"),
        model=new_model(),
        input_shape=SHAPE,
        mean=MEAN,
        std=STD,
        **kw,
    )


def run(strategy, new_model, xs, ys, rounds=1, **config):
    config = {"lr": 0.1, "local-epochs": 1, "batch-size": len(ys[0])} | config
    return run_inprocess(
        strategy,
        client_app(new_model, xs, ys),
        len(xs),
        rounds,
        ArrayRecord(new_model().state_dict()),
        config,
    )


# --- (1) a FedSGD-like round captures the gradient ----------------------------------------------
def test_fedsgd_capture_is_the_gradient_of_the_clients_batch(sample_data, tmp_path):
    """One local step over the whole batch: the observation's update is the gradient of the mean
    loss at the global weights, g = (θ_global − θ_new)/lr, to 1e-6 (BatchNorm in train mode).
    The floor is float32's: θ_new is rounded by half an ulp (6e-8 near 1), so g by 6e-8/lr = 6e-7
    (5.2e-7 measured, at the BatchNorm weight)."""
    xs, ys = partitions(sample_data, 1, 3)
    strategy = audit(tmp_path, bnnet)
    run(strategy, bnnet, xs, ys)
    (record,) = strategy.records
    assert (record.round, record.node_id) == (1, node_id_of(0))
    obs = Observation.load(record.directory, model=bnnet())
    assert obs.protocol == Protocol("fedsgd", 1, 0.1, None) and obs.batch_size == 3
    assert obs.labels is None  # Flower does not send labels
    model = bnnet().train()
    x = (xs[0] - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    grads = torch.autograd.grad(F.cross_entropy(model(x), ys[0]), list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), grads, strict=True):
        assert (obs.update[name] - g).abs().max() < 1e-6, name
    # gradinv's own simulation of the same client agrees
    sim = observe(bnnet(), xs[0], ys[0], mean=MEAN, std=STD)
    for name, g in sim.update.items():
        assert (obs.update[name] - g).abs().max() < 1e-6, name
    # the buffers are the ones the server sent (the initial BatchNorm statistics)
    assert set(obs.buffers) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert torch.equal(obs.buffers["bn.running_var"], torch.ones(4))


# --- (2) an attack on a captured FedAvg update matches the attack on gradinv's simulation --------
def test_attack_on_flower_fedavg_update_matches_gradinv_simulation(sample_data, tmp_path):
    xs, ys = partitions(sample_data, 1, 2)
    attack = make_attack("ig", iterations=200, progress=False)
    strategy = audit(tmp_path, lambda: mlp(200), attack=attack)
    run(strategy, lambda: mlp(200), xs, ys, **{"local-epochs": 2, "batch-size": 1})
    (record,) = strategy.records
    assert record.protocol == Protocol("fedavg", 2, 0.1, 1) and record.error is None
    flower_psnr = evaluate(record.reconstruction.images, xs[0])["psnr"]
    protocol = Protocol("fedavg", local_epochs=2, local_lr=0.1, local_batch_size=1)
    sim = observe(mlp(200), xs[0], ys[0], protocol=protocol, mean=MEAN, std=STD)
    captured = Observation.load(record.directory, model=mlp(200))
    assert max((captured.update[k] - sim.update[k]).abs().max() for k in sim.update) < 1e-6
    gradinv_psnr = evaluate(attack.reconstruct(sim).images, xs[0])["psnr"]
    assert abs(flower_psnr - gradinv_psnr) <= 0.5, (flower_psnr, gradinv_psnr)
    assert flower_psnr > 15  # the attack does rebuild the images (20.2 dB measured)
    # the reconstruction is written beside the observation, without ground truth
    meta = json.load(open(os.path.join(record.directory, "reconstruction.json")))
    assert meta["attack"] == "ig" and meta["matching_loss"] == pytest.approx(record.matching_loss)
    assert "psnr" not in json.dumps(meta)
    assert os.path.isfile(os.path.join(record.directory, "reconstruction.png"))


def test_auto_attack_on_a_single_image_fedsgd_capture_is_exact(sample_data, tmp_path):
    """attack="auto" picks the closed form that applies (a first linear layer with bias, B = 1)."""
    xs, ys = partitions(sample_data, 1, 1)
    strategy = audit(tmp_path, mlp, attack="auto")
    run(strategy, mlp, xs, ys)
    (record,) = strategy.records
    assert record.reconstruction.info["chosen"] == "bias"
    assert evaluate(record.reconstruction.images, xs[0])["psnr"] > 100  # 161.9 dB measured


# --- (3) the wrapper never changes what is aggregated --------------------------------------------
def test_aggregation_is_bit_identical_with_and_without_the_audit(
    sample_data, tmp_path, monkeypatch
):
    """With one-shot reply iterables (a generator, as a real grid may return), 3 clients, 2
    rounds: the global arrays are bit-identical; the audit still saw every reply."""
    original = InProcessGrid.send_and_receive

    def one_shot(self, messages, *, timeout=None):
        return (m for m in original(self, messages, timeout=timeout))

    monkeypatch.setattr(InProcessGrid, "send_and_receive", one_shot)
    xs, ys = partitions(sample_data, 3, 2)
    results = []
    for wrapped in (False, True):
        random.seed(0)  # FedAvg samples the nodes' order with `random`
        strategy = fedavg(3)
        if wrapped:
            strategy = audit(tmp_path, mlp, strategy=strategy)
        result = run(strategy, mlp, xs, ys, rounds=2, **{"local-epochs": 2, "batch-size": 1})
        results.append(result.arrays.to_torch_state_dict())
    assert results[0].keys() == results[1].keys()
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k
    assert len(strategy.records) == 6
    assert sorted(os.listdir(tmp_path / "audit")) == ["round-1", "round-2"]


# --- (4) saved observations reload --------------------------------------------------------------
def test_saved_observations_reload(sample_data, tmp_path, capsys):
    """A built-in model reloads without model=, a custom one needs it; the reloaded observation
    can be attacked later."""
    xs, ys = partitions(sample_data, 2, 2)

    def new_model() -> nn.Module:
        torch.manual_seed(0)
        return build_model("mlp4", SHAPE, 10, width=32)

    strategy = audit(tmp_path, new_model, n=2, clients=[node_id_of(1)], rounds=[2])
    run(strategy, new_model, xs, ys, rounds=2)
    (record,) = strategy.records
    assert (record.round, record.node_id) == (2, node_id_of(1))
    assert os.listdir(tmp_path / "audit") == ["round-2"]
    obs = Observation.load(record.directory)  # built-in: no model needed
    assert obs.batch_size == 2 and obs.protocol.kind == "fedsgd" and obs.mean == MEAN
    capture = json.load(open(os.path.join(record.directory, "capture.json")))
    assert capture["round"] == 2 and capture["node_id"] == node_id_of(1)
    rec = make_attack("dlg", iterations=2, progress=False).reconstruct(obs)
    assert rec.images.shape == (2, *SHAPE)
    # ... and from the command line
    assert main(["inspect", record.directory, "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["revealed"]["labels"] is None and info["revealed"]["batch_size"] == 2
    out = tmp_path / "cli"
    args = ["attack", "--observation", record.directory, "--attack", "dlg", "--iterations", "2"]
    assert main([*args, "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["scored"] is False
    # a custom model's observation needs model=
    custom = audit(tmp_path / "c", mlp)
    run(custom, mlp, xs[:1], ys[:1])
    with pytest.raises(GradinvError, match="custom model"):
        Observation.load(custom.records[0].directory)
    reloaded = Observation.load(custom.records[0].directory, model=mlp())
    assert torch.equal(reloaded.parameters["1.weight"], mlp().state_dict()["1.weight"])


# --- (5) the example ----------------------------------------------------------------------------
def test_example_runs_end_to_end(tmp_path):
    """Budget: 60 s on a quiet machine. The example runs on one thread, so its CPU time is its
    wall time there; CPU time is what is checked (a busy shared machine stretches wall time)."""
    out = tmp_path / "example"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "flower", "run.py"), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 60, f"the example used {cpu:.0f} s of CPU"
    summary = json.load(open(out / "summary.json"))
    assert len(summary["records"]) == 2  # client 0, rounds 1 and 2
    assert os.listdir(out / "private") == ["partition-0.safetensors"]  # the script's, for --truth
    for row in summary["records"]:
        assert row["psnr"] > 15, row
        for name in ("observation.json", "reconstruction.png", "scored.png"):
            assert os.path.isfile(os.path.join(row["dir"], name))


# --- Flower internals the in-process grid relies on (pinned flwr==1.41.*) ------------------------
def test_inprocess_grid_messages_and_contexts(tmp_path):
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    assert flwr.__version__.startswith("1.41.")
    seen = []
    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:
        cfg = msg.content["config"]
        assert cfg["lr"] == 0.5  # no other client's mutation reaches this one
        cfg["lr"] = 99.0
        context.state["calls"] = MetricRecord({"n": context.state.get("calls", {"n": 0})["n"] + 1})
        meta = msg.metadata
        seen.append((meta.src_node_id, meta.dst_node_id, meta.message_id, meta.run_id,
                     dict(context.node_config), context.state["calls"]["n"]))  # fmt: skip
        content = RecordDict(
            {"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})}
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate_(msg: Message, context) -> Message:
        metrics = {"num-examples": 1, "p": float(context.node_config["partition-id"])}
        return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    before = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    strategy = FedAvg(min_available_nodes=3, min_train_nodes=3, min_evaluate_nodes=3)
    result = run_inprocess(strategy, app, 3, 2, {"w": torch.ones(2)}, {"lr": 0.5})
    assert result.evaluate_metrics_clientapp[2]["p"] == pytest.approx(1.0)  # mean of 0, 1, 2
    assert torch.equal(result.arrays.to_torch_state_dict()["w"], torch.ones(2))
    assert (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id) == before
    assert len(seen) == 6
    for src, dst, msg_id, run_id, node_config, _ in seen:
        assert src == SUPERLINK_NODE_ID and msg_id and run_id == 1
        p = node_config["partition-id"]
        assert dst == node_id_of(p) and node_config["num-partitions"] == 3
    assert sorted(c for *_, c in seen) == [1, 1, 1, 2, 2, 2]  # contexts persist across rounds
    with pytest.raises(RuntimeError, match="TaskIdentity"):
        Message(RecordDict(), 5, "train")  # outside a run, Message() has no identity to read


# --- every user error is one GradinvError -------------------------------------------------------
def test_user_errors_are_one_line(sample_data, tmp_path):
    xs, ys = partitions(sample_data, 1, 2)
    cases = [
        (lambda: audit(tmp_path / "a", mlp, attack="nope"), "unknown attack"),
        (lambda: LeakageAuditStrategy(fedavg(1), str(tmp_path / "b"), input_shape=SHAPE), "model="),
        (lambda: audit(tmp_path / "c", mlp, keys={"epochs": "e"}), "unknown key"),
        (
            lambda: run(audit(tmp_path / "d", mlp, strategy=FedAvg()), mlp, xs, ys),
            "min_available_nodes=2",
        ),
        (lambda: run(audit(tmp_path / "e", lambda: mlp(32)), mlp, xs, ys), "do not match"),
        (lambda: run(audit(tmp_path / "f", mlp), mlp, xs, ys, **{"lr": -1.0}), "lr must be > 0"),
    ]
    for make, message in cases:
        with pytest.raises(GradinvError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
    # a missing config key is named with the way out, before any client trains (the client
    # would fail on it too); keys= renames it (here the audit reads 0.2, the client 0.1)
    app = client_app(mlp, xs, ys)
    config = {"learning-rate": 0.2, "local-epochs": 1, "batch-size": 2}
    initial = ArrayRecord(mlp().state_dict())
    with pytest.raises(GradinvError, match=r"no 'lr'.*keys="):
        run_inprocess(audit(tmp_path / "g", mlp), app, 1, 1, initial, config)
    renamed = audit(tmp_path / "h", mlp, keys={"lr": "learning-rate"})
    run_inprocess(renamed, app, 1, 1, initial, config | {"lr": 0.1})
    assert renamed.records[0].protocol.local_lr == 0.2
    with pytest.raises(GradinvError, match="already holds an audit"):
        audit(tmp_path / "h", mlp)


def test_gradinv_never_needs_flower():
    code = (
        "import sys; import gradinv, gradinv.pipeline, gradinv.cli; gradinv.observe\n"
        "assert 'flwr' not in sys.modules\n"
        "sys.modules['flwr'] = None\n"
        "from gradinv.errors import GradinvError\n"
        "try:\n    import gradinv.integrations.flower\nexcept GradinvError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "pip install gradinv[flower]" in proc.stdout


def test_flowers_ray_simulation_runs_the_same_strategy(tmp_path):
    out = tmp_path / "ray"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    script = os.path.join(ROOT, "examples", "flower", "run_ray.py")
    proc = subprocess.run(
        [sys.executable, script, "--out", str(out)], capture_output=True, text=True, env=env,
        timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    clients = os.listdir(out / "round-1")
    assert len(clients) == 2
    for name in clients:
        assert Observation.load(str(out / "round-1" / name), model=nn.Sequential(
            nn.Flatten(), nn.Linear(768, 32), nn.ReLU(), nn.Linear(32, 10)
        )).protocol.kind == "fedsgd"  # fmt: skip
