"""gradinv: measure how much federated-learning updates leak through gradient inversion.

from gradinv import load_dataset, sample_batch, build_model, observe, make_attack, evaluate
data = load_dataset("sample")
images, labels = sample_batch(data, batch_size=1)
model = build_model("mlp4", (3, 32, 32), data.num_classes)
observation = observe(model, images, labels, share_labels=True)   # what the server sees
reconstruction = make_attack("dlg", iterations=20).reconstruct(observation)
print(evaluate(reconstruction.images, images)["psnr"])
"""

from .attacks import ATTACKS, Attack, Reconstruction, make_attack
from .data import load_dataset, sample_batch
from .errors import GradinvError
from .fl import Observation, Protocol, aggregate, observe
from .metrics import evaluate
from .models import build_model, train_model

__version__ = "0.1.0"

__all__ = [
    "ATTACKS",
    "Attack",
    "GradinvError",
    "Observation",
    "Protocol",
    "Reconstruction",
    "aggregate",
    "build_model",
    "evaluate",
    "load_dataset",
    "make_attack",
    "observe",
    "sample_batch",
    "train_model",
]
