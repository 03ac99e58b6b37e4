// The dashboard's main flow in a real Chromium, driven by playwright-core.
// Run by tests/it/browser.rs (which starts the gateway and two webhook
// receivers), with its settings in the environment:
//   GATEWAY_URL, ADMIN_EMAIL, ADMIN_PASSWORD, FAILING_HOOK, GOOD_HOOK,
//   SCREENSHOTS (a folder), CHROMIUM (the browser's path).
// Prints `INSTANCE <id>` and `DELIVERY <id>` lines for the Rust test to check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const base = env('GATEWAY_URL');
const shots = env('SCREENSHOTS');
mkdirSync(shots, { recursive: true });
const WAIT = 15000;

function step(name) { console.log(`STEP ${name}`); }
// Polls `fn` in the page until it is truthy (waitForFunction would need
// eval, which the page's Content-Security-Policy forbids, as it should).
async function until(page, fn, arg) {
  const end = Date.now() + WAIT;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + fn.toString());
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const fail = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => fail.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) fail.push(`console error: ${m.text()}`); });
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) fail.push(`CSP violation: ${m.text()}`); });
  page.setDefaultTimeout(WAIT);

  step('log in');
  await page.goto(base + '/');
  await page.waitForSelector('#login-form');
  await page.screenshot({ path: join(shots, 'login.png') });
  await page.fill('#login-form input[name=email]', env('ADMIN_EMAIL'));
  await page.fill('#login-form input[name=password]', 'wrong password');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#login-error:not(:empty)');
  await page.fill('#login-form input[name=password]', env('ADMIN_PASSWORD'));
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#live[data-state=on]');
  const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie);
  if (/eyJ/.test(stored)) fail.push('the token was stored in the browser: ' + stored);

  step('create an instance');
  await page.fill('#create-instance input[name=name]', 'Shop front');
  await page.fill('#create-instance input[name=webhookUrl]', env('FAILING_HOOK'));
  await page.fill('#create-instance input[type=number] >> nth=0', '0'); // max retries: fail at once
  await page.click('#create-instance button[type=submit]');
  await page.waitForURL(/#\/i\/[^/]+\/pair$/);
  const id = decodeURIComponent(page.url().match(/#\/i\/([^/]+)\/pair/)[1]);
  console.log(`INSTANCE ${id}`);

  step('the QR code appears and rotates without a reload');
  await page.evaluate(() => { window.__sameDocument = true; });
  const img = await page.waitForSelector('#qr-img');
  const first = await img.getAttribute('data-fingerprint');
  await until(page, () => { const i = document.querySelector('#qr-img'); return i && i.complete && i.naturalWidth > 0; });
  await page.screenshot({ path: join(shots, 'pairing.png') });
  await until(page, (fp) => { const i = document.querySelector('#qr-img'); return i && i.dataset.fingerprint !== fp; }, first);

  step('pairing by phone number shows the code to type into the phone');
  await page.fill('#pair-code-form input[name=phone]', '79005550000');
  await page.click('#pair-code-form button[type=submit]');
  await page.waitForSelector('#pair-code p');
  const code = await page.evaluate(() => document.querySelector('#pair-code p.code')?.textContent ?? document.querySelector('#pair-code').textContent);
  if (!/^[0-9A-Z]{4}-[0-9A-Z]{4}$/.test(code)) fail.push('the pair-code form showed no code: ' + code);

  step('the sim scan turns the page to connected');
  const login = await fetch(base + '/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: env('ADMIN_EMAIL'), password: env('ADMIN_PASSWORD') }) }).then((r) => r.json());
  const scan = await fetch(`${base}/api/sim/instances/${id}/scan`, { method: 'POST', headers: { authorization: 'Bearer ' + login.token, 'content-type': 'application/json' },
    body: JSON.stringify({ phone: '79005550000' }) });
  if (scan.status !== 200) throw new Error('scan answered ' + scan.status);
  await page.waitForSelector('#connected');
  await page.waitForSelector('#conn-status [data-status=connected]');
  if (!(await page.evaluate(() => window.__sameDocument === true))) fail.push('the page reloaded');
  await page.screenshot({ path: join(shots, 'connected.png') });

  step('send a text; its ticks go to read');
  await page.click('[data-tab=send]');
  await page.fill('#send-form input[name=phone]', '79001234567');
  await page.fill('#send-form textarea[name=message]', 'Hello from the dashboard');
  await page.click('#send-form button[type=submit]');
  await page.waitForSelector('#sent-messages .ticks[data-status=read]');
  await page.screenshot({ path: join(shots, 'send.png') });

  step('chats and history');
  await page.click('[data-tab=chats]');
  await page.click('#chat-list button[data-chat^="79001234567"]');
  await page.waitForSelector('#messages .bubble.me .ticks[data-status=read]');
  await page.screenshot({ path: join(shots, 'chats.png') });

  step('a failing webhook shows in the deliveries');
  await page.click('[data-tab=webhooks]');
  const failed = await page.waitForSelector('#deliveries tr[data-status=failed]');
  const delivery = await failed.getAttribute('data-delivery');
  await page.waitForSelector(`#deliveries tr[data-delivery="${delivery}"] td.error:not(:empty)`);
  await page.screenshot({ path: join(shots, 'webhooks.png') });

  step('fix the webhook URL, retry from the page');
  await page.click('[data-tab=settings]');
  await page.fill('#settings-form input[name=webhookUrl]', env('GOOD_HOOK'));
  await page.click('#settings-form button[type=submit]');
  await page.waitForSelector('#toast div:has-text("Saved")');
  await page.click('[data-tab=webhooks]');
  await page.click(`#deliveries tr[data-delivery="${delivery}"] button.retry`);
  await page.waitForSelector(`#deliveries tr[data-delivery="${delivery}"][data-status=delivered]`);
  console.log(`DELIVERY ${delivery}`);

  step('activity, usage, account, admin');
  await page.click('[data-tab=activity]');
  await page.waitForSelector('#activity tr');
  await page.screenshot({ path: join(shots, 'activity.png') });
  await page.click('[data-tab=usage]');
  await page.waitForSelector('#usage-chart svg rect.sent:not([height="0"])');
  await page.screenshot({ path: join(shots, 'usage.png') });
  await page.click('[data-nav=instances]');
  await page.waitForSelector(`#instances tr[data-instance="${id}"] [data-status=connected]`);
  await page.screenshot({ path: join(shots, 'dashboard.png') });
  await page.click('[data-nav=account]');
  await page.click('#show-key');
  await until(page, () => !document.querySelector('#api-key').textContent.includes('•'));
  await page.click('[data-nav=admin]');
  await page.waitForSelector('#users tr');
  await page.waitForSelector('#system-stats b');
  await page.screenshot({ path: join(shots, 'admin.png') });

  step('a phone-sized screen');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('[data-nav=instances]');
  await page.waitForSelector(`#instances tr[data-instance="${id}"]`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 2) fail.push(`the phone-sized page scrolls sideways by ${overflow}px`);
  await page.screenshot({ path: join(shots, 'dashboard-phone.png') });
  await page.setViewportSize({ width: 1280, height: 860 });

  step('log out');
  await page.click('#logout');
  await page.waitForSelector('#login-form');
  if (!(await page.isHidden('#nav'))) fail.push('the navigation is still shown after logout');
} catch (e) {
  fail.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
if (fail.length) {
  console.error('FAILED:\n' + fail.join('\n'));
  process.exit(1);
}
console.log('OK');
