// Runs the real `wrangler dev` for `npm start` and the e2e test: offline, loopback only, in its own process
// group (wrangler → node → workerd; killing one PID leaves workerd holding the port), ready once /healthz answers.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = path.resolve(import.meta.dirname, "..");
const WRANGLER_BIN = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const HOST = "127.0.0.1";
/** Without these wrangler phones home and waits ~3 s for the `cf` object. */
export const OFFLINE_ENV = { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const OUTPUT_TAIL_CHARS = 16_000;

/** Process groups still running; killed on exit if their owner never got to stop them (crash, process.exit). */
const liveGroups = new Set();
process.once("exit", () => {
  for (const pid of liveGroups) killGroup(pid, "SIGKILL");
});

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: nothing left in the group
  }
}

/**
 * Whether any process of the group still runs. Zombies do not count: an init that reaps slowly (as in some
 * containers and VMs) keeps them listed for seconds after they died. Without /proc, ask the kernel instead.
 */
function groupIsRunning(pgid) {
  let pids;
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return killGroup(pgid, 0);
  }
  return pids.some((pid) => {
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(pgrp) === pgid && state !== "Z";
    } catch {
      return false; // exited while we looked
    }
  });
}

/** A port on 127.0.0.1 nobody listens on: `preferred` when it is free, else one the OS picks. */
export async function findFreePort(preferred = 0) {
  const tryListen = (port) =>
    new Promise((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(port, HOST, () => {
        const { port: chosen } = server.address();
        server.close(() => resolve(chosen));
      });
    });
  if (preferred) {
    try {
      return await tryListen(preferred);
    } catch {
      // taken (or not allowed): let the OS choose instead
    }
  }
  return tryListen(0);
}

function spawnWrangler(args, { env = {}, onOutput }) {
  const child = spawn(process.execPath, [WRANGLER_BIN, ...args], {
    cwd: ROOT,
    detached: true, // its own process group, so one kill(-pid) reaches workerd too
    stdio: ["ignore", "pipe", "pipe"], // no stdin: never prompts, no interactive hotkeys
    env: { ...process.env, ...OFFLINE_ENV, ...env },
  });
  liveGroups.add(child.pid);
  let tail = "";
  for (const name of ["stdout", "stderr"]) {
    child[name].setEncoding("utf8");
    child[name].on("data", (chunk) => {
      tail = (tail + chunk).slice(-OUTPUT_TAIL_CHARS);
      onOutput?.(chunk, name);
    });
  }
  const exited = once(child, "exit").then(([code, signal]) => ({ code, signal }));
  return { child, exited, output: () => tail };
}

/**
 * `signal` (SIGTERM) to the whole group, SIGKILL after `graceMs`; resolves once no process of the group
 * is left. With `signal: "SIGKILL"` nothing gets to clean up: a crash, as the fault tests need it.
 */
export async function stopProcessGroup(child, { graceMs = 5000, signal = "SIGTERM" } = {}) {
  const pid = child.pid;
  if (pid === undefined) return;
  const running = () => child.exitCode === null && child.signalCode === null;
  const exited = running() ? once(child, "exit") : Promise.resolve();
  if (killGroup(pid, signal)) {
    const deadline = Date.now() + graceMs;
    const timer = setTimeout(() => killGroup(pid, "SIGKILL"), graceMs);
    await exited;
    // The leader is gone; workerd may take a moment longer. Nothing to await for a grandchild: poll the group.
    while (groupIsRunning(pid) && Date.now() < deadline + 2000) {
      if (Date.now() > deadline) killGroup(pid, "SIGKILL");
      await delay(20);
    }
    clearTimeout(timer);
  }
  await exited;
  liveGroups.delete(pid);
}

/**
 * `wrangler d1 migrations apply mailroom --local`, into `persistTo` when given (else .wrangler/state).
 * Resolves to how many migrations it applied (0: the database was up to date); a failure carries wrangler's output.
 */
export async function applyMigrations({ persistTo, env, onOutput } = {}) {
  const args = ["d1", "migrations", "apply", "mailroom", "--local", ...(persistTo ? ["--persist-to", persistTo] : [])];
  // "About to apply 10 migration(s)" precedes the work ("No migrations to apply!" when there is none); read
  // as it streams, since the tables after it can be longer than the output kept.
  let applied = 0;
  let recent = ""; // a chunk may end inside the line
  const run = spawnWrangler(args, {
    env,
    onOutput: (chunk, stream) => {
      const text = recent + chunk;
      applied ||= Number(/About to apply (\d+) migration/.exec(text)?.[1] ?? 0);
      recent = text.slice(-64);
      onOutput?.(chunk, stream);
    },
  });
  const { code, signal } = await run.exited;
  await stopProcessGroup(run.child); // reaps anything it left behind
  if (code !== 0) throw new Error(`wrangler d1 migrations apply failed (${signal ?? `exit code ${code}`}):\n${run.output()}`);
  return applied;
}

class SettingsError extends Error {
  constructor(settings) {
    super(`the settings cannot work: ${settings.join(", ")} (the Worker's log line "service is misconfigured" says why)`);
  }
}

async function waitForHealthy(url, { exited, timeoutMs, output }) {
  let exit;
  exited.then((e) => (exit = e));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exit) throw new Error(`wrangler dev exited (${exit.signal ?? `exit code ${exit.code}`}) before it was ready:\n${output()}`);
    try {
      // One request that waits as long as it must (a probe given up while workerd still starts would be
      // answered and logged later anyway, and npm start hides exactly one probe's lines); a refused
      // connection logs nothing and is simply tried again.
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1000, deadline - Date.now())) });
      if (res.ok) return;
      // Up, but its settings cannot work: say which, at once (waiting would not fix them).
      if (res.status === 503) throw new SettingsError((await res.json()).settings);
    } catch (error) {
      if (error instanceof SettingsError) throw error;
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`wrangler dev did not answer ${url} within ${timeoutMs} ms:\n${output()}`);
    await delay(100);
  }
}

/**
 * Runs the Worker's scheduled handler (the sweep) now and then every `everyMs`, as the Cron Trigger does
 * in production; wrangler dev never fires cron triggers by itself. A failed call is skipped: the next one
 * comes a minute later anyway.
 */
function startSweeping(url, everyMs) {
  const sweep = () => fetch(`${url}/cdn-cgi/handler/scheduled`, { signal: AbortSignal.timeout(everyMs) }).then((res) => res.body?.cancel(), () => {});
  void sweep();
  const timer = setInterval(sweep, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Starts `wrangler dev` on 127.0.0.1 and resolves once GET /healthz answers 200.
 * `vars` become `--var NAME:VALUE` (they override wrangler.toml and .dev.vars); `envFile` replaces .dev.vars.
 * With `sweepEveryMs`, the scheduled handler runs then and at that interval (npm start: every minute).
 */
export async function startWranglerDev({ port, inspectorPort, vars = {}, persistTo, envFile, env, onOutput, readyTimeoutMs = 30_000, sweepEveryMs } = {}) {
  port ??= await findFreePort();
  inspectorPort ??= await findFreePort();
  const args = [
    "dev",
    ...["--ip", HOST, "--port", String(port), "--inspector-port", String(inspectorPort)],
    "--show-interactive-dev-session=false",
    "--test-scheduled", // the sweep is triggered through /cdn-cgi/handler/scheduled (and no warning that cron does not fire locally)
    ...(persistTo ? ["--persist-to", persistTo] : []),
    ...(envFile ? ["--env-file", envFile] : []),
    ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  const { child, exited, output } = spawnWrangler(args, { env, onOutput });
  const url = `http://${HOST}:${port}`;
  try {
    await waitForHealthy(`${url}/healthz`, { exited, timeoutMs: readyTimeoutMs, output });
  } catch (error) {
    await stopProcessGroup(child);
    throw error;
  }
  const stopSweeping = sweepEveryMs ? startSweeping(url, sweepEveryMs) : () => {};
  return {
    url,
    port,
    inspectorPort,
    pid: child.pid,
    exited,
    output,
    stop: () => (stopSweeping(), stopProcessGroup(child)),
    kill: () => (stopSweeping(), stopProcessGroup(child, { signal: "SIGKILL" })),
  };
}
