// Everything one test file needs: a fresh crm server, an admin API client, a site that accepts
// the demo site's origin, the demo site on its own origin, and a browser.
import { Api } from './api.mjs';
import { launchBrowser } from './browser.mjs';
import { startCrm } from './crm-server.mjs';
import { startStaticServer } from './static-server.mjs';

/**
 * Starts the stack. `siteId` is created with allowed_origins = [the demo site's origin];
 * `tagAttrs` goes into every tracking tag (e.g. " data-cookieless"); `chat: true` adds the chat
 * widget's tag to every page; `crmArgs` are more arguments for `crm up`.
 * Returns { crm, api, web, browser, siteId, stop() }; stop() is safe to call on partial starts.
 */
export async function startStack({ siteId, siteName = siteId, tagAttrs = '', chat = false, crmArgs = [] }) {
  const stack = { siteId };
  stack.stop = async () => {
    await stack.browser?.close().catch(() => {});
    await stack.web?.close().catch(() => {});
    await stack.crm?.stop();
  };
  try {
    stack.crm = await startCrm({ args: crmArgs });
    stack.web = await startStaticServer({ collector: stack.crm.url, site: siteId, tagAttrs, chat });
    stack.api = await Api.login(stack.crm.url, stack.crm.password);
    await stack.api.post('/api/v1/sites', { site_id: siteId, name: siteName, allowed_origins: [stack.web.origin] });
    stack.browser = await launchBrowser();
  } catch (err) {
    const output = stack.crm ? `\ncrm output so far:\n${stack.crm.output()}` : '';
    await stack.stop();
    err.message += output;
    throw err;
  }
  return stack;
}
