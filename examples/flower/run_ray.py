"""The same LeakageAuditStrategy under Flower's own simulation engine (needs Ray; ~40 s to start).

    python examples/flower/run_ray.py --out runs/flower-ray

Inside a ServerApp the audit wraps the strategy exactly as in `run.py`; only the runner differs.
Node ids are Flower's random 64-bit ids here, so the audit saves every client (clients=None)."""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from gradinv.integrations.flower import LeakageAuditStrategy

OUT = "runs/flower-ray"


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU(), nn.Linear(32, 10))


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    p = int(context.node_config["partition-id"])
    generator = torch.Generator().manual_seed(p)  # stand-in private data: 2 images per client
    x, y = torch.rand(2, 3, 16, 16, generator=generator), torch.tensor([p % 10, (p + 1) % 10])
    model = net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    optimiser = torch.optim.SGD(model.parameters(), lr=msg.content["config"]["lr"])
    optimiser.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimiser.step()
    content = {
        "arrays": ArrayRecord(model.state_dict()),
        "metrics": MetricRecord({"num-examples": 2}),
    }
    return Message(content=RecordDict(content), reply_to=msg)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    strategy = LeakageAuditStrategy(
        FedAvg(fraction_evaluate=0.0), OUT, model=net(), input_shape=(3, 16, 16)
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(net().state_dict()),
        num_rounds=1,
        train_config=ConfigRecord({"lr": 0.1, "local-epochs": 1, "batch-size": 2}),
    )
    for r in strategy.records:
        print(f"saved round {r.round} node {r.node_id} ({r.protocol.kind}) -> {r.directory}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT)
    OUT = parser.parse_args().out
    start = time.perf_counter()
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=2,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    print(f"done in {time.perf_counter() - start:.1f} s")
