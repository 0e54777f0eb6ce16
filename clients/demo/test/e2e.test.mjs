// The demo editor in a real browser: Debian's Chromium driven by playwright-core, against
// a real `collab up` (Redis, gateway, edit-transform, presence) started by the test.
//
// Two people type at once (emoji and newlines included) and end with the server's text;
// each sees the other's cursor; one goes offline, keeps typing, comes back and
// converges; a restore from the history panel reaches both. A screenshot of the two
// editors side by side is written to build/screenshots/.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startGateway } from '../../js/test/support/gateway.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SCREENSHOTS = resolve(ROOT, 'build', 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying hosts this machine
// cannot reach.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let gateway;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  gateway = await startGateway();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

async function openEditor(doc, name) {
  const context = await browser.newContext({ viewport: { width: 760, height: 560 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  await page.goto(`${gateway.http}/d/${doc}`);
  await page.fill('#name-input', name);
  await page.click('#sign-in-form button');
  await page.waitForSelector('#workspace:not([hidden]) .cm-content');
  await page.waitForFunction(() => document.getElementById('status').dataset.status === 'open');
  return { context, page, problems };
}

const editorText = (page) => page.evaluate(() => window.collab.text);
const shownText = (page) => page.evaluate(() => window.editorView.state.doc.toString());

async function settled(pages, doc) {
  for (let i = 0; i < 100; i += 1) {
    const server = (await gateway.document(doc)).text;
    const synced = await Promise.all(pages.map((p) => p.evaluate(() => window.collab.synced)));
    const texts = await Promise.all(pages.map(editorText));
    if (synced.every(Boolean) && texts.every((t) => t === server)) return server;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const texts = await Promise.all(pages.map(editorText));
  assert.fail(`did not converge: server ${JSON.stringify((await gateway.document(doc)).text)}, editors ${JSON.stringify(texts)}`);
}

async function typeInto(page, text, where = 'Control+End') {
  await page.click('.cm-content');
  await page.keyboard.press(where);
  for (const char of text) {
    if (char === '\n') await page.keyboard.press('Enter');
    else await page.keyboard.insertText(char);
  }
}

test('two people type at once, see each other, survive going offline, restore', async () => {
  const doc = 'browser-demo';
  const ada = await openEditor(doc, 'Ada');
  const lin = await openEditor(doc, 'Lin <script>alert(1)</script>');

  // Names are shown as text: the tag is visible, not executed.
  await ada.page.waitForSelector('#participants li:nth-child(2)');
  const names = await ada.page.$$eval('#participants .name', (els) => els.map((e) => e.textContent));
  assert.ok(names.includes('Lin <script>alert(1)</script>'), names.join(', '));
  assert.equal(await ada.page.$$eval('#participants script', (els) => els.length), 0);

  // One line to start from, then Ada types at the end while Lin types at the start.
  await typeInto(ada.page, '\n');
  await settled([ada.page, lin.page], doc);
  await Promise.all([
    typeInto(ada.page, 'Hello 😀 from Ada\nline two\n'),
    typeInto(lin.page, 'Lin: é ✨ 👍🏽\n', 'Control+Home'),
  ]);
  const text = await settled([ada.page, lin.page], doc);
  assert.ok(text.includes('Hello 😀 from Ada'), text);
  assert.ok(text.includes('Lin: é ✨ 👍🏽'), text);
  assert.equal(await shownText(ada.page), text);
  assert.equal(await shownText(lin.page), text);

  // Each sees the other's cursor, labelled with the other's name.
  await ada.page.click('.cm-content');
  await ada.page.keyboard.press('Control+Home');
  await lin.page.click('.cm-content');
  await lin.page.keyboard.press('Control+End');
  await ada.page.waitForSelector('.cm-remote-caret .cm-remote-name');
  await lin.page.waitForSelector('.cm-remote-caret .cm-remote-name');
  assert.equal(await ada.page.textContent('.cm-remote-caret .cm-remote-name'), 'Lin <script>alert(1)</script>');
  assert.equal(await lin.page.textContent('.cm-remote-caret .cm-remote-name'), 'Ada');

  await mkdir(SCREENSHOTS, { recursive: true });
  const shots = [await ada.page.screenshot(), await lin.page.screenshot()];
  const board = await browser.newPage({ viewport: { width: 1540, height: 580 } });
  const images = shots.map((png) => `<img src="data:image/png;base64,${png.toString('base64')}">`).join('');
  await board.setContent(
    `<body style="margin:0;padding:10px;background:#c9ced8;display:flex;gap:10px">${images}</body>`,
  );
  await writeFile(resolve(SCREENSHOTS, 'two-editors.png'), await board.screenshot());
  await board.close();

  // Lin goes offline, keeps typing, comes back: everyone converges, nothing twice.
  await lin.context.setOffline(true);
  await lin.page.evaluate(() => window.collab.disconnect());
  await lin.page.waitForFunction(() => document.getElementById('status').dataset.status === 'offline');
  await typeInto(lin.page, 'typed offline\n');
  await typeInto(ada.page, 'Ada meanwhile\n', 'Control+Home');
  assert.ok((await lin.page.evaluate(() => window.collab.pending)) > 0);
  await lin.context.setOffline(false);
  await lin.page.evaluate(() => window.collab.connect());
  const merged = await settled([ada.page, lin.page], doc);
  assert.equal(merged.split('typed offline').length, 2, merged);
  assert.equal(merged.split('Ada meanwhile').length, 2, merged);

  // Restore version 1 from Ada's history panel: both editors show it.
  const before = (await gateway.document(doc)).version;
  await ada.page.click('#history-refresh');
  await ada.page.click('#history li[data-version="1"]');
  await ada.page.waitForSelector('#preview:not([hidden])');
  const target = (await gateway.history(doc, 0, 1)).ops[0];
  const expected = await ada.page.textContent('#preview-text');
  await ada.page.click('#restore');
  for (let i = 0; i < 100 && (await gateway.document(doc)).version === before; i += 1) {
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const restored = await settled([ada.page, lin.page], doc);
  assert.equal(restored, expected);
  assert.equal((await gateway.document(doc)).version, before + 1);
  assert.equal(target.v, 0);

  assert.deepEqual(ada.problems, []);
  assert.deepEqual(lin.problems, []);
  await ada.context.close();
  await lin.context.close();
});

test('a token in the URL skips the sign-in and leaves the address bar; viewers cannot type', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const token = gateway.token({ sub: 'vic', name: 'Vic', role: 'viewer' });
  await page.goto(`${gateway.http}/d/read-only#token=${token}`);
  await page.waitForFunction(() => document.getElementById('status').dataset.status === 'open');
  // The token left the address bar.
  assert.equal(new URL(page.url()).hash, '');
  // A viewer's editor is read-only.
  assert.equal(await page.getAttribute('.cm-content', 'contenteditable'), 'false');
  await context.close();
});
