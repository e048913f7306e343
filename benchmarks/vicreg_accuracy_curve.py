"""Linear-probe test accuracy of the default VICReg model after every epoch, against wall-clock training minutes.

Trains the `default` profile's VICReg configuration from scratch (the shipped weights' recipe, about 33 minutes on
2 cores) and probes the representation after each epoch, as in notebook 03; probing time is not counted.
Run: AML_PROFILE=default .venv/bin/python benchmarks/vicreg_accuracy_curve.py
"""
import json

import torch

from helpers import evaluation as E, setup, vicreg_models as M, vicreg_training as VT
from helpers.data import load_cifar10


def main():
    s = setup.settings("03_vicreg")
    cifar = load_cifar10()
    y_train, y_test = torch.as_tensor(cifar["y_train"]), torch.as_tensor(cifar["y_test"])
    curve = []

    def probe(epoch, model, history):
        f_train = VT.features(model.encoder, cifar["x_train"])
        f_test = VT.features(model.encoder, cifar["x_test"])
        acc = E.linear_probe(f_train, y_train, f_test, y_test, epochs=s.probe_epochs)["test_acc"]
        curve.append({"epoch": epoch, "minutes": round(history["seconds"] / 60, 2), "probe_acc": round(acc, 4)})
        print(json.dumps(curve[-1]), flush=True)

    torch.manual_seed(0)
    untrained = VT.VICReg(M.model_config("vicreg", s).encoder)
    probe(0, untrained, {"seconds": 0.0})
    VT.train_vicreg(cifar["x_train"], M.model_config("vicreg", s), callback=probe)


if __name__ == "__main__":
    main()
