import cProfile, pstats, runpy, os, io, time
pr = cProfile.Profile(); pr.enable()
t=time.perf_counter()
try:
    runpy.run_path(os.environ["PROF_PAGE"], run_name="__main__")
finally:
    pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats(os.environ.get("PROF_SORT","cumulative")).print_stats(70)
    open(os.environ["PROF_OUT"], "a").write(f"=== run {time.perf_counter()-t:.3f}s\n" + s.getvalue())
