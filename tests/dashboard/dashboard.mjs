// Drives the storage node's dashboard in headless Chromium.
// Usage: node dashboard.mjs URL TOKEN SCREENSHOT.png
// Prints one line of JSON with the figures the page shows; exits 1 on any failure.
import { chromium } from 'playwright-core';

const [url, token, screenshot] = process.argv.slice(2);
if (!url || !token || !screenshot) {
  console.error('usage: node dashboard.mjs URL TOKEN SCREENSHOT.png');
  process.exit(2);
}

const fail = err => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
};
setTimeout(() => fail(new Error('timed out after 60 s')), 60_000).unref();

const loaded = '#earned-sat[data-value]:not([data-value=""])';
const ids = ['earned-sat', 'received-sat', 'settled-sat', 'balance-sat', 'storage-used', 'storage-offered',
  'egress-used', 'egress-cap', 'jobs-run', 'audits-answered', 'audits-failed', 'uptime', 'channels-open'];
// The figures printed on stdout, by element id.
const printed = ['earned-sat', 'received-sat', 'settled-sat', 'storage-used', 'storage-offered',
  'egress-used', 'jobs-run', 'channels-open'];

async function run() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    const pageErrors = [];
    page.on('pageerror', err => pageErrors.push(err));

    await page.goto(url);
    await page.waitForSelector('#login-form', { state: 'visible' });

    await page.fill('#token', token + '-wrong');
    await page.click('#login');
    await page.waitForSelector('#login-error', { state: 'visible' });

    await page.fill('#token', token);
    await page.click('#login');
    await page.waitForSelector(`${loaded}, #login-error:visible`);
    if (await page.isVisible('#login-error')) {
      throw new Error('login refused: ' + await page.textContent('#login-error'));
    }

    await page.reload();
    await page.waitForSelector(loaded);
    if (await page.isVisible('#login-form')) throw new Error('the session did not survive a reload');

    const values = {};
    for (const id of ids) {
      const value = await page.getAttribute('#' + id, 'data-value');
      if (value === null) throw new Error(`#${id} has no data-value`);
      if (value !== '' && !/^\d+$/.test(value)) throw new Error(`#${id} data-value is not an integer: ${value}`);
      values[id] = value;
    }
    const out = {};
    for (const id of printed) out[id.replace('-', '_')] = Number(values[id]);
    out.peer_id = await page.getAttribute('#peer-id', 'title');
    if (!out.peer_id) throw new Error('#peer-id is empty');

    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: screenshot, fullPage: true });
    if (pageErrors.length) throw pageErrors[0];
    console.log(JSON.stringify(out));
  } finally {
    await browser.close();
  }
}

run().then(() => process.exit(0), fail);
