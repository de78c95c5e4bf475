"""``evaluate_model``: a thin Prefect flow over :func:`pipeline.evaluate.evaluate_run`, one task per
(run, split); returns the metrics and logs a compact table (accuracy, weighted F1 per run and split)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.ui import run_name


@task(name="evaluate-run", retries=0)
def evaluate_task(run_dir: str, split: str, store: str | None = None) -> dict:
    from pipeline.evaluate import evaluate_run

    return evaluate_run(run_dir, split, store=store)


def metrics_table(results: list[dict]) -> str:
    lines = ["| run | model | split | n | accuracy | f1_weighted |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['run']} | {r['model']} | {r['split']} | {r['n']} | {100 * r['accuracy']:.2f} | "
                     f"{100 * r['f1_weighted']:.2f} |")
    return "\n".join(lines)


@flow(name="evaluate_model", flow_run_name=run_name("evaluate"), log_prints=True)
def evaluate_model(run_dirs: list[str] | str, splits: list[str] | str = "valid", store: str | None = None) -> list[dict]:
    runs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    wanted = [splits] if isinstance(splits, str) else list(splits)
    results = [evaluate_task(r, s, store) for r in runs for s in wanted]
    get_run_logger().info("\n%s", metrics_table(results))
    return results
