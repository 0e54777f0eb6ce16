// A real gateway for the integration tests: `collab up` (its own Redis, gateway,
// edit-transform, presence) on free ports in a temporary folder, plus tokens and the
// HTTP API. Start it once per test file; it takes about two seconds.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const READY_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 20000;

/**
 * The Python with the project installed: `COLLAB_PYTHON` (a path relative to clients/js,
 * an absolute path, or a bare command looked up on PATH), else the repository's .venv.
 */
export function pythonPath() {
  const value = process.env.COLLAB_PYTHON || '../../.venv/bin/python';
  return value.includes('/') || value.includes('\\') ? resolve(PACKAGE_ROOT, value) : value;
}

async function freePort() {
  const server = createServer();
  await new Promise((ok, fail) => server.listen(0, '127.0.0.1', ok).once('error', fail));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

const base64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 JWT with the claims of PROTOCOL.md, "Connecting". */
export function mintToken(secret, { sub, name = sub, doc = '*', role = 'editor', ttlSeconds = 3600 }) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  const payload = base64url(JSON.stringify({ sub, name, doc, role, exp }));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** The `collab gateway` child of `collab up` (pgrep: Linux and macOS alike). */
async function gatewayPid(parent) {
  const output = await new Promise((ok, fail) => {
    const pgrep = spawn('pgrep', ['-P', String(parent), '-f', 'collab_cli gateway'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    pgrep.stdout.on('data', (chunk) => (out += chunk));
    pgrep.once('error', fail);
    pgrep.once('exit', () => ok(out));
  });
  const pids = output.split(/\s+/).filter(Boolean).map(Number);
  if (pids.length !== 1) throw new Error(`expected one gateway process under ${parent}, found ${pids.length}`);
  return pids[0];
}

export async function startGateway() {
  const secret = randomBytes(32).toString('hex'); // 64 characters
  const dataDir = await mkdtemp(join(tmpdir(), 'collab-js-test-'));
  const ports = [];
  while (ports.length < 3) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const [port, transformPort, presencePort] = ports;
  const env = {
    ...process.env,
    COLLAB_JWT_SECRET: secret,
    COLLAB_TRANSFORM_PORT: String(transformPort),
    COLLAB_PRESENCE_PORT: String(presencePort),
    // A drain spreads its reconnects over this window (10 s by default): keep stops short.
    COLLAB_GATEWAY_DRAIN_SECONDS: '0.5',
  };
  delete env.REDIS_URL; // `collab up` then starts its own Redis in the data folder
  const child = spawn(pythonPath(), ['-m', 'collab_cli', 'up', '--port', String(port), '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk).slice(-20000); // the tail, for a failure message
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((ok) => {
    child.once('exit', (code, signal) => ok({ code, signal }));
    child.once('error', (error) => ok({ error })); // not started at all
  });
  let running = true;
  exited.then(() => {
    running = false;
  });
  // If the test process ends without stop() (a crash, a timeout), still stop the stack.
  process.once('exit', () => running && child.kill('SIGINT'));
  child.once('error', (error) => keep(`spawn failed: ${error.message}\n`));

  const http = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!running) {
      await rm(dataDir, { recursive: true, force: true });
      throw new Error(`collab up exited before it was ready (python: ${pythonPath()}):\n${output}`);
    }
    try {
      const response = await fetch(`${http}/readyz`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`collab up not ready after ${READY_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }

  const token = (claims) => mintToken(secret, claims);
  const admin = token({ sub: 'test-admin', name: 'Admin', role: 'editor' });
  const get = async (path) => {
    const response = await fetch(`${http}${path}`, { headers: { Authorization: `Bearer ${admin}` } });
    if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };

  return {
    http,
    output: () => output,
    token,
    wsUrl: (doc) => `ws://127.0.0.1:${port}/v1/collaborate/${doc}`,
    document: (doc) => get(`/v1/documents/${doc}`),
    history: (doc, from = 0, limit = 1000) => get(`/v1/documents/${doc}/history?from=${from}&limit=${limit}`),
    /**
     * SIGTERM to the gateway process alone: it drains (`reconnect`, then 1012) and exits,
     * and `collab up` starts it again. Resolves with the drained process id.
     */
    async restartGateway() {
      const pid = await gatewayPid(child.pid);
      process.kill(pid, 'SIGTERM');
      return pid;
    },
    /** SIGINT, as Ctrl-C: `collab up` drains the gateway and stops Redis. */
    async stop() {
      if (running) {
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
