// Where the dashboard tests get the dashboard from: the copy the crm binary embeds (default), or
// widgets/dashboard/dist/ of this checkout (DASHBOARD_FROM=dist), served in place of the
// binary's through request routing.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newContext } from './browser.mjs';
import { REPO_ROOT } from './env.mjs';

export const DASHBOARD_FROM = process.env.DASHBOARD_FROM || 'binary';
export const DIST = join(REPO_ROOT, 'widgets/dashboard/dist');
export const DIST_FILES = { '/': 'index.html', '/app/app.js': 'app.js', '/app/app.css': 'app.css' };
const TYPES = { 'index.html': 'text/html; charset=utf-8', 'app.js': 'application/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

/** A browser context that gets the dashboard of the server at `crmUrl` from the binary, or from dist/. */
export async function dashboardContext(browser, crmUrl, viewport) {
  const ctx = await newContext(browser, { viewport });
  if (DASHBOARD_FROM === 'dist') {
    await ctx.route((url) => url.origin === crmUrl && url.pathname in DIST_FILES, async (route) => {
      const file = DIST_FILES[new URL(route.request().url()).pathname];
      route.fulfill({ body: await readFile(join(DIST, file)), contentType: TYPES[file] });
    });
  } else if (DASHBOARD_FROM !== 'binary') {
    throw new Error(`DASHBOARD_FROM must be binary or dist, not ${DASHBOARD_FROM}`);
  }
  return ctx;
}
