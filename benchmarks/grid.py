"""The whole torch grid: the nine's cases, the losses beyond the nine against their peers, training
steps, torch.compile and memory, in the order ``python -m benchmarks`` runs them."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import peer_cases
from benchmarks import torch_cases as tc
from benchmarks._timing import EXTEND_S


def all_torch_rows(*, quick: bool, device: str, log: Callable[[str], None] = print,
                   done: Callable[[list[dict]], None] = lambda rows: None) -> list[dict]:
    """Every torch row over the grid; ``quick`` runs tiny sizes and few rounds (CI: seconds).

    ``done`` is called with the rows so far after each case (a run cut short keeps what it measured).
    """
    if quick:
        sizes, class_shapes, rounds, budget = [10_000], [(1000, 10), (2, 4, 16, 16)], 2, 0.2
        seg = dict(batch=2, class_counts=[2, 4], size=32)
        mem = dict(batch=2, class_counts=[8], size=128)
        compile_names, train_steps, sub_n = ("mse",), 1, 10_000
        peer_sizes, peer_class_shapes = [10_000], [(2, 4, 16, 16)]
        peer_seg = dict(batch=2, class_counts=[3], size=16)
    else:
        sizes, rounds, budget = [10_000, 100_000, 1_000_000, 10_000_000], 30, 2.0
        # 2-D: about 4M logits at every C; 4-D: segmentation batches of 8 x 256 x 256
        class_shapes = [(4_000_000 // c, c) for c in (2, 10)] + [(65_536, 64), (4_096, 1_000), (128, 32_000)]
        class_shapes += [(8, c, 256, 256) for c in (2, 4, 8, 21)]
        # mid-sized 2-D batches, where which kernel runs depends on the class count
        class_shapes += [(16_000, 10), (2_048, 64)]
        seg = dict(batch=8, class_counts=[2, 4, 8, 16, 32], size=256)
        mem = dict(batch=8, class_counts=[2, 8, 21, 32], size=256)
        compile_names, train_steps, sub_n = None, 10, 4_000_000
        # the losses beyond the nine against their peers, from 1e5 elements up
        peer_sizes = [100_000, 1_000_000, 10_000_000]
        peer_class_shapes = [(400_000, 10), (4_096, 1_000), (8, 4, 256, 256), (8, 21, 256, 256)]
        peer_seg = dict(batch=8, class_counts=[2, 4, 8, 16, 32], size=256)
    monai = not quick  # importing MONAI alone takes longer than the whole quick run
    cases = tc.elementwise_cases(sizes, device) + tc.class_cases(class_shapes, device)
    cases += tc.dice_cases(device=device, monai=monai, **seg) + tc.subclass_cases(sub_n, seg, device)
    cases += peer_cases.elementwise_peer_cases(peer_sizes, device)
    cases += peer_cases.class_peer_cases(peer_class_shapes, device, monai=monai)
    cases += peer_cases.overlap_peer_cases(device=device, monai=monai, **peer_seg)
    rows = []
    for case in cases:
        log(f"  {case.section:12s} {case.loss:42s} {case.shape}")
        slow = case.section in ("dice", "subclass", "beyond the nine") or len(case.shape.split("x")) == 4
        rows += tc.run_case(case, rounds=rounds, budget_s=budget * (2 if slow else 1), device=device,
                            extend_s=0 if quick else EXTEND_S)
        done(rows)
    log("  training steps")
    # the 2% target is near this machine's round-to-round noise: three times the rounds
    rows += tc.train_rows(device, rounds=3 * rounds, budget_s=budget * 6, steps_per_sample=train_steps,
                       monai=monai)
    done(rows)
    log("  torch.compile")
    rows += tc.compile_rows(device, names=compile_names)
    done(rows)
    log("  memory")  # last: it changes how glibc allocates for the rest of the process
    for c in mem["class_counts"]:
        rows += tc.memory_cases(device=device, monai=monai, batch=mem["batch"], classes=c, size=mem["size"])
    return rows
