"""The audit: one command that runs a battery of attacks on one simulated deployment and writes a
self-contained page (report.html) and the same content as data (report.json).

    from gradinv.audit import run_audit
    from gradinv.pipeline import RunConfig

    config = RunConfig(model="lenet", data="sample", batch_size=4, labels="auto")  # labels hidden
    report = run_audit(config, "runs/audit", budget="quick", log=print)
    report["verdict"]["images"]["default_psnr"]       # what the server's blind choice reached

See docs/audit.md for what the battery runs and how to read the page.
"""

from .battery import BUDGETS, DEFAULT_DEFENSES, AuditPlan, plan_audit, run_audit

__all__ = ["BUDGETS", "DEFAULT_DEFENSES", "AuditPlan", "plan_audit", "run_audit"]
