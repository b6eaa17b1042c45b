"""The host's GC pauses with and without perfsdk (benches/eval/gc_pause.py), run once in its
quick mode so it never rots: the figures' structure only, never their timings (a shared
machine's pauses are noise at this length; the full mode is the measurement)."""

import gc_pause


def test_the_gc_pause_evaluation_runs_in_its_quick_mode():
    results = gc_pause.evaluate(quick=True)
    assert set(results) == {"otel", "perfsdk"}
    for variant, runs in results.items():
        (run,) = runs
        assert run["variant"] == variant and 0 < run["requests"] <= run["client"]["requests"]
        assert run["client"]["errors"] == 0
        assert len(run["collections"]) == len(run["pause_ms_by_gen"]) == 3 and run["pause_ms"] >= 0
        assert run["tracked_objects"] > 0 and run["seconds"] > 0
    without, with_ = results["otel"][0], results["perfsdk"][0]
    assert without["perfsdk_modules"] == 0  # the baseline never loaded perfsdk
    assert with_["perfsdk_modules"] > 0 and with_["spans"] > 0
    assert with_["spans_exported"] == with_["spans"] and with_["spans_dropped"] == 0  # every span on disk
    lines = gc_pause.table(results)
    assert lines[0].startswith("| variant | total GC pause") and lines[2].startswith("| otel |")
    assert any(line.startswith("perfsdk / otel: total GC pause") for line in lines)


def test_the_plain_shop_is_the_demo_shop_without_perfsdk():
    """The baseline runs the demo shop's own routes, with a plain LRU cache for perfsdk's."""
    module = gc_pause.plain_shop_module()
    app = module.create_app("sqlite://", products=20, adaptive=False)
    client = app.test_client()
    assert client.get("/products/7").get_json()["id"] == 7
    assert client.get("/products/7").get_json()["id"] == 7  # (from the cache)
    assert client.get("/search?q=lamp").status_code == 200
    shop = app.extensions["shop"]
    assert isinstance(shop.cache, gc_pause.PlainLRUCache) and 7 in shop.cache._data
    shop.close()
