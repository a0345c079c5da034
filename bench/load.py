#!/usr/bin/env python
"""Load test of the dashboard: N real browser sessions upload a slice at once; ONE markdown table out.

    .venv/bin/python bench/load.py                      # 8 sessions, the shipped models if listed
    .venv/bin/python bench/load.py --sessions 2 --out bench/load_last.md
    .venv/bin/python bench/load.py --models-root /path/to/registry --images a.png b.dcm

Starts ``streamlit run streamlit_app.py`` on a free loopback port (``$BT_RUNS_DIR`` set to the
models' registry), opens ``--sessions`` browser contexts in one headless Chromium (Debian's
``/usr/bin/chromium`` through Playwright, async API; each context is its own Streamlit session),
waits until every page shows its file uploader (models loaded), then all ready sessions upload one
image each at the same moment (``--images``, default the PNGs in ``examples/``, else generated disc
images) and wait for the answer: both models' tumour probabilities on the page (a model's "unlike the
training data — no answer" warning also counts as its answer). Per session: answered or not, errors
(a Python exception or an error box on the page, a timeout, a browser failure), latency from the
upload to the answer. The server's resident memory (its process and children, psutil) is sampled
every 0.2 s; the peak is reported.

Models: ``--models-root DIR``, default ``trained_models/`` when ``trained_models/shipped.json``
exists, else a temporary registry of two tiny runs trained on generated images by
``tests/app_fixtures.py`` (about 20 s; the table says which). Everything, building that registry
included, stops after ``--timeout`` seconds (default 300); sessions that have not answered by then
count as errors. Progress goes to stderr. Exit status: 0 when every session answered, 1 otherwise,
2 for a bad option.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from browser import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402  (the browser tests' settings)

MODELS = {"cnn": "CNN", "transfer": "Transfer"}  # shipped.json key -> label prefix on the page
SAMPLE_S = 0.2
T0 = time.perf_counter()

# Evaluated in the page until it returns something: "ok", "ok-ood" or "error: ...".
ANSWER_JS = """names => {
  const q = s => [...document.querySelectorAll(s)].map(e => e.innerText);
  const ex = q('[data-testid="stException"]');
  if (ex.length) return 'error: exception: ' + ex[0].slice(0, 200);
  const errs = q('[data-testid="stAlertContentError"]');
  if (errs.length) return 'error: ' + errs[0].slice(0, 200);
  const labels = q('[data-testid="stMetricLabel"]'), warns = q('[data-testid="stAlertContentWarning"]');
  let ood = false;
  for (const n of names) {
    if (labels.some(l => l.includes(n + ' tumour probability'))) continue;
    if (warns.some(w => w.includes(n + ' (') && w.includes('unlike the training data'))) { ood = true; continue; }
    return null;
  }
  return ood ? 'ok-ood' : 'ok';
}"""


def log(msg: str) -> None:
    print(f"[load {time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu_model()}, {usable}/{os.cpu_count()} cores{load}"


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics (numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- models -------------------------------------------------------------------------------------

BUILD_CHILD = r"""
import os, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], "tests")]
from app_fixtures import build_registry
work = Path(sys.argv[2])
build_registry(work / "runs", work)
"""


def fixture_registry(work: Path, deadline: float) -> Path:
    """Two tiny runs (tests/app_fixtures.py) trained in a child process, bounded by the deadline."""
    log("no trained_models/shipped.json: training the tiny fixture registry (about 20 s)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BT_CACHE_DIR": str(work / "cache")}
    with open(work / "build.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", BUILD_CHILD, str(REPO), str(work)], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=remaining(deadline))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("the fixture registry was not built before the global timeout")
    if proc.returncode != 0:
        raise RuntimeError("building the fixture registry failed:\n" + (work / "build.log").read_text()[-2000:])
    return work / "runs"


def models_used(root: Path, fixture: bool) -> str:
    try:
        shipped = json.loads((root / "shipped.json").read_text())
    except (OSError, ValueError) as err:
        return f"{root}: shipped.json unreadable ({type(err).__name__})"
    parts = []
    for kind, run_id in shipped.items():
        try:
            record = json.loads((root / str(run_id) / "run.json").read_text())
            label = record.get("label") or (record.get("config") or {}).get("model") or ""
        except (OSError, ValueError):
            label = "run.json unreadable"
        parts.append(f"{kind}={run_id}" + (f" ({label})" if label else ""))
    where = "temporary fixture registry (tiny models trained on generated images)" if fixture else str(root)
    return f"{where}: " + ", ".join(parts)


def load_images(paths: list[str] | None, work: Path) -> list[Path]:
    if paths:
        files = [Path(p) for p in paths]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise SystemExit(f"load.py: no such image: {', '.join(missing)}")
        return files
    examples = sorted((REPO / "examples").glob("*.png"))
    if examples:
        return examples
    import numpy as np
    from PIL import Image
    from conftest import blob_image
    rng, out = np.random.default_rng(0), []
    for i in range(4):
        path = work / f"generated_{i}.png"
        Image.fromarray(blob_image(rng, 240, tumour=bool(i % 2))).save(path)
        out.append(path)
    return out


# --- server -------------------------------------------------------------------------------------

class Server:
    """``streamlit run`` on loopback with its RSS (process + children) sampled in a thread."""

    def __init__(self, root: Path, work: Path):
        self.port, self.log_path = free_port(), work / "streamlit.log"
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "BT_RUNS_DIR": str(root), "BT_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1",
               "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.port",
               str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
               "--server.fileWatcherType", "none"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.peak_rss, self.rss, self._stop = 0, 0, threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil
        try:
            proc = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                rss = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.rss, self.peak_rss = rss, max(self.peak_rss, rss)
            except psutil.Error:
                return
            self._stop.wait(SAMPLE_S)

    def wait_healthy(self, deadline: float) -> None:
        sys.path[:0] = [str(REPO), str(REPO / "tests")]
        from app_fixtures import wait_healthy

        wait_healthy(self.url, self.proc, deadline, self.log_tail)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._sampler.join(timeout=2)


# --- sessions -----------------------------------------------------------------------------------

async def session(i: int, browser, url: str, image: Path, start: asyncio.Event, ready: list, result: dict,
                  page_timeout_ms: float) -> None:
    """One browser context: open the app, wait for ``start``, upload ``image``, wait for both answers."""
    result.update(session=i, image=image.name, answered=False, ood=False, error=None, latency=None)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        page.set_default_timeout(page_timeout_ms)
        t_open = time.monotonic()
        await page.goto(url, wait_until="domcontentloaded")
        upload = page.locator("input[type=file]")
        await upload.wait_for(state="attached")
        result["ready_s"] = time.monotonic() - t_open
        ready.append(i)
        await start.wait()
        t_upload = time.monotonic()
        await upload.set_input_files(files=[{"name": image.name, "mimeType": "image/png" if image.suffix == ".png"
                                             else "application/octet-stream", "buffer": image.read_bytes()}])
        handle = await page.wait_for_function(ANSWER_JS, arg=list(MODELS.values()), polling=100)
        verdict = await handle.json_value()
        if verdict.startswith("error:"):
            result["error"] = verdict.removeprefix("error: ")
        else:
            result.update(answered=True, ood=verdict == "ok-ood", latency=time.monotonic() - t_upload)
    except asyncio.CancelledError:
        result["error"] = result["error"] or "global timeout"
        raise
    except Exception as err:  # noqa: BLE001 - one failed session must not cost the others
        result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    finally:
        try:
            await asyncio.wait_for(context.close(), 10)
        except Exception:  # noqa: BLE001
            pass


async def drive(url: str, images: list[Path], n: int, deadline: float, server: Server) -> list[dict]:
    from playwright.async_api import async_playwright

    results = [{} for _ in range(n)]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            start, ready = asyncio.Event(), []
            page_timeout_ms = max(1.0, remaining(deadline)) * 1000  # 0 would mean no limit
            tasks = [asyncio.create_task(session(i, browser, url, images[i % len(images)], start, ready, results[i],
                                                 page_timeout_ms)) for i in range(n)]
            # all pages open (the first one loads the models); then every ready session uploads at once
            while len(ready) + sum(t.done() for t in tasks) < n and remaining(deadline) > 0:
                await asyncio.sleep(0.1)
            log(f"{len(ready)}/{n} sessions show the uploader (server RSS {server.rss / 2**20:.0f} MiB); uploading")
            start.set()
            done, pending = await asyncio.wait(tasks, timeout=remaining(deadline))
            for task in pending:
                task.cancel()
            if pending:
                log(f"global timeout: {len(pending)} session(s) cancelled")
                await asyncio.wait(pending, timeout=15)
        finally:
            await browser.close()
    for i, res in enumerate(results):
        res.setdefault("session", i)
        res.setdefault("answered", False)
        if not res["answered"] and not res.get("error"):
            res["error"] = "global timeout"
    return results


# --- report -------------------------------------------------------------------------------------

def table(results: list[dict], peak_rss: int, models: str) -> str:
    lat = [r["latency"] for r in results if r.get("latency") is not None]
    fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
    answered = sum(bool(r.get("answered")) for r in results)
    ood = sum(bool(r.get("ood")) for r in results)
    errors = [r["error"] for r in results if r.get("error")]
    head = ["sessions", "answers", "errors", "p50 latency (s)", "p95 latency (s)", "peak server RSS (MiB)",
            "machine", "models"]
    row = [str(len(results)), f"{answered}" + (f" ({ood} with a no-answer warning)" if ood else ""),
           str(len(errors)) + (f" ({'; '.join(sorted(set(errors)))[:300]})" if errors else ""),
           fmt(percentile(lat, 50)), fmt(percentile(lat, 95)), f"{peak_rss / 2**20:.0f}" if peak_rss else "n/a",
           machine(), models]
    row = [c.replace("|", "\\|").replace("\n", " ") for c in row]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |"])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions (default 8)")
    default_root = REPO / "trained_models"
    ap.add_argument("--models-root", type=Path, default=None,
                    help="run registry with shipped.json (default: trained_models/ when it lists shipped runs, "
                         "else a temporary fixture registry)")
    ap.add_argument("--images", nargs="+", help="images to upload, one per session in turn (default: examples/*.png)")
    ap.add_argument("--timeout", type=float, default=300.0, help="global limit in seconds (default 300)")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (server log, registry)")
    args = ap.parse_args(argv)
    if args.sessions < 1:
        ap.error("--sessions must be at least 1")
    if args.timeout <= 0:
        ap.error("--timeout must be positive")
    if args.models_root is not None and not (args.models_root / "shipped.json").is_file():
        ap.error(f"--models-root {args.models_root}: no shipped.json there")
    if args.models_root is None and (default_root / "shipped.json").is_file():
        args.models_root = default_root
    if not os.path.exists(CHROMIUM):
        ap.error(f"{CHROMIUM} is missing (apt-get install chromium)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    # last resort: if cleanup itself hangs, leave anyway (the server is ours and is killed first)
    server: Server | None = None

    def watchdog():
        log("watchdog: still running 60 s after the global timeout; killing the server and exiting")
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
        os._exit(3)

    guard = threading.Timer(args.timeout + 60, watchdog)
    guard.daemon = True
    guard.start()
    work = Path(tempfile.mkdtemp(prefix="bt_load_"))
    fixture, models, results = args.models_root is None, "none", []
    try:
        try:
            root = fixture_registry(work, deadline) if fixture else args.models_root.resolve()
            models = models_used(root, fixture)
            log(f"models: {models}")
            images = load_images(args.images, work)
            log(f"images: {', '.join(p.name for p in images)}")
            server = Server(root, work)
            server.wait_healthy(deadline)
            log(f"server healthy at {server.url} (pid {server.proc.pid}, RSS {server.rss / 2**20:.0f} MiB); "
                f"{args.sessions} sessions")
            results = asyncio.run(drive(server.url, images, args.sessions, deadline, server))
        except Exception as err:  # noqa: BLE001 - no registry, server or browser: every session failed so
            log(f"error: {type(err).__name__}: {err}")
            results = [{"session": i, "answered": False, "error": str(err).splitlines()[0][:200] or type(err).__name__}
                       for i in range(args.sessions)]
        for r in results:
            ready = f"{r['ready_s']:.1f} s" if r.get("ready_s") is not None else "-"
            latency = f"{r['latency']:.2f} s" if r.get("latency") is not None else "-"
            log(f"session {r['session']}: {r.get('image', '-')} answered={r['answered']} page ready {ready}, "
                f"upload to answer {latency}" + (f", error: {r['error']}" if r.get("error") else ""))
        if server is not None and "Traceback" in server.log_tail(200000):
            log("the server log has a traceback:\n" + server.log_tail())
    finally:
        if server is not None:
            server.stop()
        guard.cancel()
        if args.keep_tmp:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = table(results, server.peak_rss if server is not None else 0, models)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(r["answered"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
