// Test helpers: start the real `docdb` binary (path from DOCDB_BIN) on a throwaway
// data dir and socket, one per test, and stop it again.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DOCDB_BIN = process.env.DOCDB_BIN;

/** Why the end-to-end tests are skipped, or false when they run. */
export const SKIP_E2E = DOCDB_BIN
  ? false
  : 'DOCDB_BIN is not set: end-to-end tests need the server binary ' +
    '(cargo build --release -p docdb, then DOCDB_BIN=target/release/docdb)';

if (SKIP_E2E) {
  console.log(`\n*** SKIPPING DocDB end-to-end tests: ${SKIP_E2E} ***\n`);
}

export function tempDir(prefix = 'docdb-ts-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function canConnect(path) {
  return new Promise((resolve) => {
    const s = net.createConnection({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A running server on its own temp dir; `restart()` keeps dir and socket. */
export class TestServer {
  constructor(extraArgs = [], { logLevel = 'warn' } = {}) {
    this.dir = tempDir();
    this.dataDir = join(this.dir, 'data');
    this.socket = join(this.dir, 'docdb.sock');
    this.extraArgs = extraArgs;
    this.logLevel = logLevel;
    this.child = null;
    this.stderr = '';
  }

  static async start(extraArgs = [], options = {}) {
    const s = new TestServer(extraArgs, options);
    await s.spawn();
    return s;
  }

  async spawn() {
    const child = spawn(
      DOCDB_BIN,
      ['serve', '--data-dir', this.dataDir, '--socket', this.socket, ...this.extraArgs],
      { env: { ...process.env, DOCDB_LOG: this.logLevel }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.child = child;
    child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
    this.exited = exited;
    let done = null;
    exited.then((st) => {
      done = st;
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (done) throw new Error(`docdb exited during start-up (${JSON.stringify(done)}): ${this.stderr}`);
      if (await canConnect(this.socket)) return;
      await sleep(20);
    }
    throw new Error('docdb did not start listening within 20 s');
  }

  /**
   * A field of the start-up line `docdb listening ... NAME=VALUE ...` (needs
   * `logLevel: 'info'`), from the latest start; waits up to 10 s for the line.
   */
  async startupField(name) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const lines = this.stderr.split('\n').filter((l) => l.includes('docdb listening'));
      const line = lines[lines.length - 1];
      const m = line?.match(new RegExp(`\\b${name}=(\\S+)`));
      if (m) return m[1];
      if (Date.now() > deadline) throw new Error(`no ${name}= on the start-up line: ${this.stderr}`);
      await sleep(20);
    }
  }

  /** SIGTERM and wait for the exit; returns the exit code. */
  async terminate(timeoutMs = 20_000) {
    const child = this.child;
    if (!child) return null;
    this.child = null;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const st = await this.exited;
    clearTimeout(t);
    return st.code;
  }

  async restart() {
    await this.terminate();
    await this.spawn();
  }

  /** Stops (SIGKILL if needed) and removes the temp dir. */
  async stop() {
    if (this.child) {
      const child = this.child;
      this.child = null;
      child.kill('SIGKILL');
      await this.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
