// Paths and prerequisites shared by the test files. Missing prerequisites are errors, never skips.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const DEMO_SITE = join(REPO_ROOT, 'widgets/demo-site');
export const SCREENSHOT_DIR = join(REPO_ROOT, 'target/widget-screenshots');
export const CRM_BIN = resolve(process.env.CRM_BIN || join(REPO_ROOT, 'target/debug/crm'));
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Throws (so the test fails) unless `path` is an executable file. */
export function requireExecutable(path, hint) {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`required executable not found: ${path}\n${hint}`);
  }
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return join(SCREENSHOT_DIR, name);
}

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
