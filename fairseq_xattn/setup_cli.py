"""``xattn user-dir``: where the plugin lives, to pass as fairseq's ``--user-dir``."""
import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="also import fairseq and the plugin and list what it registers")


def main(args: argparse.Namespace) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    print(here)
    if args.check:
        import fairseq_xattn.plugin  # noqa: F401  (registers)
        from fairseq.criterions import CRITERION_REGISTRY
        from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
        from fairseq.tasks import TASK_REGISTRY

        ours = lambda reg: sorted(k for k, v in reg.items()  # noqa: E731
                                  if getattr(v, "__module__", "").startswith("fairseq_xattn"))
        print("tasks:", ", ".join(ours(TASK_REGISTRY)))
        print("criterions:", ", ".join(ours(CRITERION_REGISTRY)))
        print("models:", ", ".join(ours(MODEL_REGISTRY)))
        print("archs:", ", ".join(sorted(k for k, v in ARCH_MODEL_REGISTRY.items()
                                          if v.__module__.startswith("fairseq_xattn"))))
    return 0
