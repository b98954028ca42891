"""Flower training audited by gradinv: what does the server see, and what can it rebuild?

    python examples/flower/run.py --out runs/flower

Four clients each hold a few private images (the built-in `sample` photos, or `--data
fashion-mnist`) and train the CNN below with FedAvg (2 local epochs, minibatches of 2). The
server's strategy is FedAvg wrapped in gradinv's LeakageAuditStrategy: it saves every client's
update as an Observation and runs an attack on the audited clients' updates. At the end this
script — which, unlike the server, owns the clients' data — scores the reconstructions.
Runs in this process (no Ray), in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from gradinv import evaluate, load_dataset, make_attack
from gradinv.data import batch_indices
from gradinv.integrations.flower import LeakageAuditStrategy, node_id_of, run_inprocess
from gradinv.pipeline import save_truth
from gradinv.report import save_reconstruction_png


class Net(nn.Module):
    """The users' own model: a small CNN (nothing gradinv knows by name). The defaults fit this
    script's defaults, so `gradinv attack --model examples/flower/run.py:Net` rebuilds it."""

    def __init__(self, in_channels: int = 3, side: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12 * ((side + 1) // 2) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.fc(x.flatten(1))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the audit (created)")
    p.add_argument("--data", default="sample", help="gradinv dataset spec (default: sample)")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--examples", type=int, default=4, help="private images per client")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2, help="the clients' local minibatch")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--audit-clients", type=int, default=1, help="attack the first K clients")
    p.add_argument("--attack", default="ig")
    p.add_argument("--iterations", type=int, default=200)
    return p.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(1)  # small models: one thread is fastest and plays well with others
    start = time.perf_counter()
    data = load_dataset(args.data)
    size, channels = args.image_size, data.channels
    # Disjoint private partitions: client p holds images p*E .. p*E+E−1 of a random draw.
    idx = batch_indices(data, args.clients * args.examples, "random", seed=0)
    images = data.load(idx.tolist(), size)
    labels = torch.as_tensor(data.labels[idx])
    mean, std = data.channel_stats(size)

    def new_model() -> Net:
        torch.manual_seed(0)
        return Net(channels, size, data.num_classes)

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """An ordinary Flower client: local SGD on its partition, in a fixed order."""
        p = int(context.node_config["partition-id"])
        part = slice(p * args.examples, (p + 1) * args.examples)
        x = (images[part] - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(
            1, -1, 1, 1
        )
        y = labels[part]
        config = msg.content["config"]
        model = new_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        optimiser = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
        b = int(config["batch-size"])
        for _ in range(int(config["local-epochs"])):
            for s in range(0, len(y), b):
                optimiser.zero_grad()
                F.cross_entropy(model(x[s : s + b]), y[s : s + b]).backward()
                optimiser.step()
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"num-examples": len(y)}),
            }
        )
        return Message(content=content, reply_to=msg)

    audited = [node_id_of(p) for p in range(args.audit_clients)]
    strategy = LeakageAuditStrategy(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=args.clients),
        args.out,
        clients=audited,
        attack=make_attack(args.attack, iterations=args.iterations, progress=False),
        model=new_model(),
        input_shape=(channels, size, size),
        mean=mean,
        std=std,
    )
    run_inprocess(
        strategy,
        app,
        num_clients=args.clients,
        num_rounds=args.rounds,
        initial_arrays=ArrayRecord(new_model().state_dict()),
        train_config={"lr": args.lr, "local-epochs": 2, "batch-size": args.batch_size},
    )

    # Scoring needs the private images: only this script has them, the server never does. They
    # go to private/, apart from the server's audit, for `gradinv attack --truth` later.
    os.makedirs(os.path.join(args.out, "private"), exist_ok=True)
    for p in range(args.audit_clients):
        part = slice(p * args.examples, (p + 1) * args.examples)
        save_truth(os.path.join(args.out, "private", f"partition-{p}.safetensors"),
                   images[part], labels[part])  # fmt: skip
    rows = []
    for r in strategy.records:
        p = r.node_id - node_id_of(0)
        truth = images[p * args.examples : (p + 1) * args.examples]
        row = {"round": r.round, "node_id": r.node_id, "partition": p, "dir": r.directory,
               "protocol": r.protocol.kind, "attack_s": r.time_s, "error": r.error}  # fmt: skip
        if r.reconstruction is not None:
            recon = r.reconstruction.images
            scores = evaluate(recon, truth)
            row |= {"psnr": round(scores["psnr"], 2), "ssim": round(scores["ssim"], 3),
                    "matching_loss": r.matching_loss}  # fmt: skip
            save_reconstruction_png(
                os.path.join(r.directory, "scored.png"), truth,
                recon[torch.as_tensor(scores["assignment"])], scores["psnr_per_image"],
                f"round {r.round}, client {p}: what the server rebuilt",
            )  # fmt: skip
        rows.append(row)
    summary = {"records": rows, "time_s": round(time.perf_counter() - start, 1)}
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    for row in rows:
        print(
            f"round {row['round']} client {row['partition']} (node {row['node_id']}): "
            f"{row.get('psnr', 'n/a')} dB PSNR, attack {row['attack_s']} s -> {row['dir']}"
        )
    print(f"audit in {args.out} ({summary['time_s']} s)")


if __name__ == "__main__":
    main()
