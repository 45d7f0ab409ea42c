// Starts `crm up` on a free port with a fresh data directory and stops it again.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRM_BIN, requireExecutable } from './env.mjs';

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Runs `$CRM_BIN up` on 127.0.0.1:0 and waits for its "listening on http://…" line.
 * Returns { url, password, output(), stop() }. One port serves the collector and the API.
 * `dataDir`: start on an existing data directory (e.g. one `crm demo accounts` filled) instead of
 * a fresh one; the server owns it from then on (removed by stop(), unless KEEP_E2E_DATA).
 * `args`: more command-line arguments for `crm up`.
 */
export async function startCrm({ password = 'e2e-admin-password', startTimeoutMs = 20_000, dataDir: existingDataDir, args: extraArgs = [] } = {}) {
  requireExecutable(CRM_BIN, 'Build it with `cargo build -p crm` (or set CRM_BIN to a crm binary).');
  const dataDir = existingDataDir || await mkdtemp(join(tmpdir(), 'crm-widget-e2e-'));
  const args = ['up', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--rate-limit-ip', '0', '--drain-timeout-secs', '2', ...extraArgs];
  const child = spawn(CRM_BIN, args, {
    env: { ...process.env, CRM_ADMIN_PASSWORD: password, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let log = '';
  const exited = new Promise((done) => child.once('exit', (code, signal) => {
    running.delete(child);
    done({ code, signal });
  }));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`crm up printed no "listening on" line within ${startTimeoutMs} ms`)), startTimeoutMs);
    const onData = (chunk) => {
      log += chunk;
      const match = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1].replace(/\/+$/, ''));
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (chunk) => { log += chunk; });
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`crm up exited (code ${code}, signal ${signal}) before listening`));
    });
  }).catch(async (err) => {
    child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`${err.message}\ncommand: ${CRM_BIN} ${args.join(' ')}\noutput:\n${log}`);
  });

  return {
    url,
    password,
    dataDir,
    output: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (!process.env.KEEP_E2E_DATA) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
