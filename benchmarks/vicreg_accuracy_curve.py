"""What your machine buys: linear-probe test accuracy of the default VICReg recipe after every epoch, against epochs
and against wall-clock training minutes on the machine it runs on.

Trains the active profile's VICReg configuration from scratch (the shipped weights' recipe; in the `default` profile
hours on a 2-core CPU, see the README) with the profile's execution settings, and probes the 128-d representation
after each epoch as notebook 03 does (train features → test); probing time is not counted as training. Each row is
printed as it comes and appended to ``data/recipes/accuracy_curve_<profile>.jsonl``; the training checkpoints in
``data/checkpoints/curve_<profile>.pt`` let a stopped run resume.

Run: AML_PROFILE=default .venv/bin/python benchmarks/vicreg_accuracy_curve.py [--every N] [--set KEY=VALUE ...]
(``--set proj_dim=1024 --set epochs=40`` changes a profile setting for this run only.)
"""
import argparse
import json

import torch

from helpers import setup, vicreg_models as M, vicreg_training as VT
from helpers.data import load_cifar10
from helpers.vicreg import VICReg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="probe after every N-th epoch (and the last)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one profile setting for this run, e.g. --set epochs=40 (repeatable)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")
    try:
        s = setup.settings("03_vicreg").updated(args.set)
    except ValueError as err:
        parser.error(str(err))
    cfg = M.model_config("vicreg", s)
    cifar = load_cifar10()
    n_train = s.n_train or len(cifar["x_train"])
    x_train, x_test = cifar["x_train"][:n_train], cifar["x_test"][:s.n_test or len(cifar["x_test"])]
    y_train, y_test = torch.as_tensor(cifar["y_train"][:n_train]), torch.as_tensor(cifar["y_test"][:len(x_test)])
    log = setup.data_dir() / "recipes" / f"accuracy_curve_{setup.profile()}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    device = setup.pick_device()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else setup.cpu_name()
    print(f"{where}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"recipe: {cfg}")
    print(f"{'epoch':>5} {'minutes':>8} {'probe':>7}")

    def probe(epoch, model, history):
        if epoch % args.every and epoch != cfg.epochs:
            return
        acc = M.probe_accuracy(model.encoder, x_train, y_train, x_test, y_test, s.probe_epochs, device)
        row = {"epoch": epoch, "minutes": round(history["seconds"] / 60, 2), "probe_acc": round(acc, 4),
               "hardware": where, "device": str(device)}
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{epoch:5d} {row['minutes']:8.1f} {acc:7.1%}", flush=True)

    torch.manual_seed(cfg.seed)
    probe(0, VICReg(cfg.encoder).to(device), {"seconds": 0.0})
    VT.train_vicreg(x_train, cfg, checkpoint=setup.data_dir() / "checkpoints" / f"curve_{setup.profile()}.pt",
                    device=device, callback=probe, deterministic=s.deterministic)


if __name__ == "__main__":
    main()
