"""What your machine buys: linear-probe test accuracy of the default VICReg recipe after every epoch, against epochs
and against wall-clock training minutes on the machine it runs on.

Trains the active profile's VICReg configuration from scratch (the shipped weights' recipe; in the `default` profile
hours on a 2-core CPU, see the README) with the profile's execution settings, and probes the 128-d representation
after each epoch as notebook 03 does (train features → test); probing time is not counted as training. Each row is
printed as it comes and appended to ``data/recipes/accuracy_curve_<profile>.jsonl``; the training checkpoints in
``data/checkpoints/curve_<profile>.pt`` let a stopped run resume.

Run: AML_PROFILE=default .venv/bin/python benchmarks/vicreg_accuracy_curve.py
"""
import json

import torch

from helpers import evaluation as E, setup, vicreg_models as M, vicreg_training as VT
from helpers.data import load_cifar10


def main():
    s = setup.settings("03_vicreg")
    cfg = M.model_config("vicreg", s)
    cifar = load_cifar10()
    n_train = s.n_train or len(cifar["x_train"])
    x_train, x_test = cifar["x_train"][:n_train], cifar["x_test"][:s.n_test or len(cifar["x_test"])]
    y_train, y_test = torch.as_tensor(cifar["y_train"][:n_train]), torch.as_tensor(cifar["y_test"][:len(x_test)])
    log = setup.data_dir() / "recipes" / f"accuracy_curve_{setup.profile()}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    device = setup.pick_device()
    print(f"{setup.cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"recipe: {cfg}")
    print(f"{'epoch':>5} {'minutes':>8} {'probe':>7}")

    def probe(epoch, model, history):
        f_train = VT.features(model.encoder, x_train, device)
        f_test = VT.features(model.encoder, x_test, device)
        acc = E.linear_probe(f_train, y_train, f_test, y_test, epochs=s.probe_epochs)["test_acc"]
        row = {"epoch": epoch, "minutes": round(history["seconds"] / 60, 2), "probe_acc": round(acc, 4),
               "cpu": setup.cpu_name(), "device": str(device)}
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{epoch:5d} {row['minutes']:8.1f} {acc:7.1%}", flush=True)

    torch.manual_seed(cfg.seed)
    probe(0, VT.VICReg(cfg.encoder).to(device), {"seconds": 0.0})
    VT.train_vicreg(x_train, cfg, checkpoint=setup.data_dir() / "checkpoints" / f"curve_{setup.profile()}.pt",
                    device=device, callback=probe, deterministic=s.deterministic)


if __name__ == "__main__":
    main()
