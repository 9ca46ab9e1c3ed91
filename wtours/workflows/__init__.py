"""The workflows floor: one entry per command, taking one validated request and returning a result.

    from wtours import FetchRequest, KnnRequest, eval_knn, fetch
    fetch(FetchRequest(only=["venice"], max_height=1080))
    eval_knn(KnnRequest(encoder="runs/dino-wt")).top1

``wtours <command>`` parses its options into the command's request model (whose fields declare every default,
bound and help once), calls the entry, and prints the result (``result.report()``); Python calls the same
entries. A workflow may import the rooms (``wtours.pipelines``, ``wtours.analysis``, ``wtours.trainers``) and the
fixtures (``wtours.sample``); nothing below it imports a workflow. Modules import their rooms inside the entries,
so that importing a request (as the CLI does for ``--help``) stays instant.
"""

# name -> (module, attribute): every entry and request ``wtours`` exports (``from wtours import fetch``), each
# imported on first use. The modules are named after their commands, so the entries are reached through them
# (``wtours.workflows.fetch.fetch``) or through ``wtours``.
EXPORTS: dict[str, tuple[str, str]] = {
    **{name: ("wtours.workflows.fetch", name) for name in ("FetchRequest", "fetch", "StatusRequest", "status")},
    **{name: ("wtours.workflows.sample", name) for name in ("SampleRequest", "render_sample")},
    **{name: ("wtours.workflows.analyze", name) for name in ("AnalyzeRequest", "analyze")},
    **{name: ("wtours.workflows.curate", name) for name in ("CurateRequest", "curate")},
    **{name: ("wtours.workflows.anonymize", name) for name in ("AnonymizeRequest", "anonymize")},
    **{name: ("wtours.workflows.pretrain", name) for name in ("PretrainRequest", "pretrain")},
    **{
        name: ("wtours.workflows.evaluate", name)
        for name in (
            "KnnRequest", "eval_knn", "LinearRequest", "eval_linear", "AttentionRequest", "eval_attention",
            "DavisRequest", "eval_davis", "ReconstructRequest", "eval_reconstruct", "TracksRequest", "eval_tracks",
        )
    },  # fmt: skip
    **{name: ("wtours.workflows.compare", name) for name in ("CompareRequest", "compare")},
    **{name: ("wtours.workflows.demo", name) for name in ("DemoRequest", "demo")},
}
