// Drives herd's web chat page (crates/herd-server/web/index.html) in headless Chromium.
//
//   HERD_WEB_URL=http://127.0.0.1:8080 node tests/web/chat.test.mjs
//
// crates/herd/tests/web_chat.rs runs it against `herd serve` on stories260K (vicuna-v1.1
// template, --ctx 2048) and also sets:
//   HERD_WEB_KEY_URL, HERD_WEB_KEY   a second server started with --api-key KEY
//   HERD_BIN, HERD_SERVE_ARGS        herd and the arguments (a JSON list) of a server this script
//                                    starts, kills in the middle of an answer and starts again
// Optional: CHROMIUM (default /usr/bin/chromium), HERD_WEB_SHOTS (screenshot folder, default
// target/ at the repository root). Exits non-zero when a check fails; prints one line per check.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error(`playwright-core is not installed: run \`npm ci\` in tests/web (.ci/run does it)\n${e.message}`);
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) {
  console.error(`Chromium is missing at ${CHROMIUM}: install it with \`apt-get install -y --no-install-recommends chromium\` (.ci/run does it) or set CHROMIUM`);
  process.exit(2);
}
const URL_MAIN = process.env.HERD_WEB_URL;
if (!URL_MAIN) {
  console.error('set HERD_WEB_URL to a running `herd serve` (e.g. http://127.0.0.1:8080)');
  process.exit(2);
}
const SHOTS = process.env.HERD_WEB_SHOTS || path.join(root, 'target');
fs.mkdirSync(SHOTS, { recursive: true });

// ------------------------------------------------------------------------------------------------
// A small harness: each check prints "ok" or "not ok"; the first failure ends the run.
// ------------------------------------------------------------------------------------------------
let passed = 0;
const t0 = Date.now();
function assert(cond, msg) { if (!cond) throw new Error(msg); }
async function check(name, fn) {
  const t = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok ${passed} - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    console.log(`not ok ${passed + 1} - ${name}\n  ${String(e && e.stack || e).split('\n').join('\n  ')}`);
    throw e;
  }
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function until(what, fn, timeoutMs = 20000, everyMs = 50) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function metrics(base, key) {
  const res = await fetch(base + '/metrics', { headers: key ? { Authorization: 'Bearer ' + key } : {} });
  assert(res.ok, `/metrics answered ${res.status}`);
  const text = await res.text();
  const get = name => {
    const m = new RegExp('^herd_' + name + ' (\\S+)$', 'm').exec(text);
    assert(m, `herd_${name} missing from /metrics`);
    return Number(m[1]);
  };
  return { running: get('running_sequences'), cancelled: get('cancelled_total') };
}

// ------------------------------------------------------------------------------------------------
// The browser. Every request is recorded (all must go to the page's own server) and so is every
// console error (none are allowed, except those a phase expects, e.g. the 400 it provokes).
// ------------------------------------------------------------------------------------------------
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-webchat-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(30000);

const requests = [];
const problems = [];      // console errors and page errors not expected by the phase
let expectedConsole = []; // regexps for console errors the current phase provokes
function watch(page) {
  page.on('request', r => requests.push(r.url()));
  page.on('console', m => {
    if (m.type() !== 'error') return;
    if (expectedConsole.some(re => re.test(m.text()))) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', e => problems.push(`page error: ${e.message}`));
  page.on('dialog', d => {
    if (d.type() === 'confirm') return d.accept();
    problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
    return d.dismiss();
  });
  return page;
}
function noProblems() {
  assert(problems.length === 0, 'errors in the page:\n' + problems.join('\n'));
}
function sameOrigin(origin) {
  const foreign = requests.filter(u => !u.startsWith('data:') && new URL(u).origin !== origin);
  assert(foreign.length === 0, 'requests to other origins: ' + foreign.join(', '));
}

// Page helpers
const lastAssistant = page => page.locator('[data-testid=assistant-message]').last();
async function status(page) {
  return page.evaluate(() => {
    const all = document.querySelectorAll('[data-testid=assistant-message]');
    const m = all[all.length - 1];
    return m ? { status: m.dataset.status, len: m.querySelector('[data-testid=assistant-text]').textContent.length,
      text: m.querySelector('[data-testid=assistant-text]').textContent,
      error: m.querySelector('[data-testid=message-error]').textContent } : null;
  });
}
async function setSetting(page, testid, value) {
  if (!(await page.locator('#settings').isVisible())) await page.click('#settings-toggle');
  await page.getByTestId(testid).fill(String(value));
}
async function type(page, text) {
  const input = page.getByTestId('message-input');
  await input.click();
  await input.fill('');
  await input.pressSequentially(text, { delay: 1 });
}
async function sendAndWaitStreaming(page, text) {
  const before = await page.locator('[data-testid=assistant-message]').count();
  await type(page, text);
  await page.keyboard.press('Enter');
  await until('the answer to start streaming', async () => {
    if ((await page.locator('[data-testid=assistant-message]').count()) <= before) return false;
    const s = await status(page);
    return s && (s.status !== 'streaming' || s.len > 0) && s;
  }, 60000, 5);
  return status(page);
}
async function waitFinished(page, timeout = 120000) {
  return until('the answer to finish', async () => {
    const s = await status(page);
    return s && s.status !== 'streaming' && s;
  }, timeout);
}

let failed = false;
let page;
const children = [];
try {
  const origin = new URL(URL_MAIN).origin;
  // The servers this run talks to; each page may only reach its own.
  const origins = [origin];
  if (process.env.HERD_WEB_KEY_URL) origins.push(new URL(process.env.HERD_WEB_KEY_URL).origin);
  const modelId = (await (await fetch(URL_MAIN + '/v1/models')).json()).data[0].id;
  page = watch(await context.newPage());

  await check('the page loads from the binary, shows the model name, no foreign requests, no errors', async () => {
    const res = await page.goto(URL_MAIN + '/');
    assert(res.ok(), `GET / answered ${res.status()}`);
    await until('the model name in the header', async () =>
      (await page.getByTestId('model-name').textContent()) === modelId);
    for (const id of ['message-input', 'send-button', 'new-chat', 'conversation-list', 'tokens-per-second'])
      assert(await page.getByTestId(id).count() === 1, `no element with data-testid=${id}`);
    assert(await page.getByTestId('conversation-item').count() === 1, 'a first conversation is listed');
    assert(await page.getByTestId('empty-chat').isVisible(), 'the new conversation shows its empty state');
    await sleep(300);
    sameOrigin(origin);
    noProblems();
  });

  await check('the Markdown renderer: expected HTML, escaping, only safe tags and http(s) links', async () => {
    const failures = await page.evaluate(() => {
      const md = window.herd.renderMarkdown;
      const A = (href, text) => `<a href="${href}" target="_blank" rel="noopener noreferrer">${text}</a>`;
      const cases = [
        ['# Title\n\nSome *it* and **bold** and ***both*** and ~~gone~~.',
          '<h1>Title</h1><p>Some <em>it</em> and <strong>bold</strong> and <strong><em>both</em></strong> and <del>gone</del>.</p>'],
        ['line one\nline two\n\nnext paragraph', '<p>line one<br>line two</p><p>next paragraph</p>'],
        ['- a\n- b\n  - c\n\n3. x\n4. y', '<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul><ol start="3"><li>x</li><li>y</li></ol>'],
        ['* one\n\n* two', '<ul><li><p>one</p></li><li><p>two</p></li></ul>'],
        ['use `<div>` and ``a ` b`` here', '<p>use <code>&lt;div&gt;</code> and <code>a ` b</code> here</p>'],
        ['[ok](https://example.com/a?b=1&c=2) [bad](javascript:alert(1)) <http://x.org> see https://herd.dev/docs.',
          `<p>${A('https://example.com/a?b=1&amp;c=2', 'ok')} bad ${A('http://x.org', 'http://x.org')} see ${A('https://herd.dev/docs', 'https://herd.dev/docs')}.</p>`],
        ['> quoted\n> more\n>\n> > inner', '<blockquote><p>quoted<br>more</p><blockquote><p>inner</p></blockquote></blockquote>'],
        ['<img src=x onerror=alert(1)><script>alert(1)</script>',
          '<p>&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(1)&lt;/script&gt;</p>'],
        ['a snake_case_name, _it_ and 2 * 3 * 4 and \\*not\\*', '<p>a snake_case_name, <em>it</em> and 2 * 3 * 4 and *not*</p>'],
        ['| a | b |\n|---|--:|\n| 1 | <i>2</i> |',
          '<div class="table-wrap"><table><thead><tr><th>a</th><th style="text-align:right">b</th></tr></thead><tbody><tr><td>1</td><td style="text-align:right">&lt;i&gt;2&lt;/i&gt;</td></tr></tbody></table></div>'],
        ['---\n## Sub ##', '<hr><h2>Sub</h2>'],
        ['![logo](https://example.com/x.png)', `<p>${A('https://example.com/x.png', 'logo')}</p>`],
      ];
      const out = [];
      for (const [src, want] of cases) {
        const got = md(src);
        if (got !== want) out.push(`${JSON.stringify(src)}\n    got  ${got}\n    want ${want}`);
      }
      const has = [
        ['```js\nlet a = \'<b>\';\n```\nafter', '<pre><code class="language-js">let a = &#39;&lt;b&gt;&#39;;</code></pre></div><p>after</p>'],
        ['text\n```\nunclosed <x>', '<p>text</p><div class="code">'],
        ['text\n```\nunclosed <x>', '<pre><code>unclosed &lt;x&gt;</code></pre>'],
        ['~~~\n```\n~~~', '<pre><code>```</code></pre>'],
      ];
      for (const [src, want] of has) {
        const got = md(src);
        if (!got.includes(want)) out.push(`${JSON.stringify(src)}\n    got  ${got}\n    lacks ${want}`);
      }
      // Safety, on nasty inputs and random mixtures of Markdown and HTML pieces: the output may
      // only hold the renderer's own tags and attributes, and links only to http(s).
      const tags = new Set(['P', 'BR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'STRONG', 'EM', 'DEL', 'CODE', 'PRE', 'DIV',
        'SPAN', 'BUTTON', 'UL', 'OL', 'LI', 'BLOCKQUOTE', 'HR', 'A', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD']);
      const attrs = new Set(['href', 'target', 'rel', 'class', 'type', 'data-copy', 'start', 'style']);
      const pieces = ['<img src=x onerror=alert(1)>', '<script>alert(1)</script>', '"', "'", '<', '>', '&', '&amp;',
        '*', '**', '_', '`', '```', '~~~', '[', ']', '(', ')', '](', 'javascript:alert(1)', 'https://a.b/"x', 'http://',
        '\n', '\n\n', '# ', '- ', '1. ', '> ', '|', '---', '\\', ' ', 'word', '<a href="javascript:x">', 'onclick=',
        '<svg/onload=alert(1)>', '<iframe src=//evil>', 'data:text/html,x', '<style>', '  '];
      let seed = 12345;
      const rnd = n => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
      const inputs = ['>'.repeat(3000) + ' deep', '- '.repeat(2000) + 'x', '*'.repeat(5000), '['.repeat(3000),
        '`'.repeat(3000), '_a '.repeat(3000), '[x](https://a.b/' + '('.repeat(2000) + ')'];
      for (let k = 0; k < 1500; k++) {
        let s = '';
        for (let n = rnd(25); n >= 0; n--) s += pieces[rnd(pieces.length)];
        inputs.push(s);
      }
      const tpl = document.createElement('template');
      for (const s of inputs) {
        let html;
        try { html = md(s); } catch (e) { out.push(`threw on ${JSON.stringify(s.slice(0, 80))}: ${e}`); continue; }
        tpl.innerHTML = html;
        for (const e of tpl.content.querySelectorAll('*')) {
          if (!tags.has(e.tagName)) { out.push(`<${e.tagName}> from ${JSON.stringify(s)}`); break; }
          const bad = [...e.attributes].find(a => !attrs.has(a.name) ||
            (a.name === 'href' && !/^https?:\/\//i.test(a.value)) ||
            (a.name === 'style' && !/^text-align:(left|right|center)$/.test(a.value)));
          if (bad) { out.push(`attribute ${bad.name}=${JSON.stringify(bad.value)} from ${JSON.stringify(s)}`); break; }
        }
        if (out.length > 5) break;
      }
      return out;
    });
    assert(failures.length === 0, 'renderer failures:\n  ' + failures.join('\n  '));
  });

  await check('the SSE reader handles events split anywhere (mid-line, mid-character, between \\r and \\n)', async () => {
    const failures = await page.evaluate(async () => {
      const text = 'data: {"a":"é—ü"}\r\n\r\n: keep-alive\n\ndata: {"b":1}\n\ndata: line1\ndata: line2\r\rdata: [DONE]\n\n';
      const want = ['{"a":"é—ü"}', '{"b":1}', 'line1\nline2', '[DONE]'];
      const bytes = new TextEncoder().encode(text);
      const out = [];
      const run = async parts => {
        const got = [];
        const body = new ReadableStream({ start(c) { for (const p of parts) c.enqueue(p); c.close(); } });
        await window.herd.readSSE(body, d => { got.push(d); });
        return got;
      };
      for (let i = 0; i <= bytes.length; i++) {
        for (let j = i; j <= bytes.length; j += 7) {
          const got = await run([bytes.slice(0, i), bytes.slice(i, j), bytes.slice(j)]);
          if (JSON.stringify(got) !== JSON.stringify(want)) { out.push(`split ${i},${j}: ${JSON.stringify(got)}`); break; }
        }
        if (out.length) break;
      }
      const one = await run([...bytes].map(b => new Uint8Array([b])));
      if (JSON.stringify(one) !== JSON.stringify(want)) out.push(`byte by byte: ${JSON.stringify(one)}`);
      return out;
    });
    assert(failures.length === 0, failures.join('\n'));
  });

  let firstTitle;
  await check('Enter sends; the answer streams in (the text grows) and tokens/s is shown', async () => {
    // 400 tokens: long enough to watch it stream and to stop the answers below in time, short
    // enough that this conversation stays within the server's context (2048) to the end.
    await setSetting(page, 'max-tokens', 400);
    await setSetting(page, 'temperature', 1);
    await page.click('#settings-toggle'); // close
    // Record the last answer's length at every change of the transcript.
    await page.evaluate(() => {
      window.__lengths = [];
      const t = document.getElementById('transcript');
      new MutationObserver(() => {
        const all = t.querySelectorAll('[data-testid=assistant-message]');
        const m = all[all.length - 1];
        if (m) window.__lengths.push([m.dataset.status, m.querySelector('[data-testid=assistant-text]').textContent.length]);
      }).observe(t, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    // Shift+Enter is a new line, not a send.
    await type(page, 'Tell me a story about a dog');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('and a cat.');
    assert(await page.getByTestId('message-input').inputValue() === 'Tell me a story about a dog\nand a cat.', 'Shift+Enter adds a new line');
    assert(await page.locator('[data-testid=user-message]').count() === 0, 'Shift+Enter does not send');
    await page.keyboard.press('Enter');
    assert(await page.getByTestId('message-input').inputValue() === '', 'the input is cleared after sending');
    const s = await waitFinished(page);
    assert(s.status === 'done', `the answer ended as ${s.status}: ${s.error}`);
    assert(s.len > 0, 'the answer is not empty');
    const lengths = await page.evaluate(() => window.__lengths);
    const streamed = [...new Set(lengths.filter(([st, n]) => st === 'streaming' && n > 0).map(([, n]) => n))];
    // The page paints once per animation frame, and a fast engine on a busy machine can finish
    // 400 tokens within a few frames: one partial paint, shorter than the answer, is the proof
    // that the text grows as it streams (two distinct lengths failed on 1 run in 10 at 2,000
    // tokens/s with a single paint of 59 of 842 characters).
    const partial = streamed.filter(n => n < s.len);
    assert(partial.length >= 1, `part of the answer was shown while it streamed (lengths seen while streaming: ${streamed.join(', ')}; the answer: ${s.len})`);
    const user = await page.locator('[data-testid=user-message] .body').first().textContent();
    assert(user === 'Tell me a story about a dog\nand a cat.', 'the user message keeps its new line');
    const tps = await page.getByTestId('tokens-per-second').textContent();
    assert(/\d+ tokens · [\d.]+ tokens\/s · first token \d+ ms/.test(tps), `tokens/s display: ${JSON.stringify(tps)}`);
    const stats = await lastAssistant(page).getByTestId('message-stats').textContent();
    assert(/tokens\/s/.test(stats), `the answer keeps its stats: ${stats}`);
    assert(await page.getByTestId('send-button').isVisible() && !(await page.getByTestId('stop-button').isVisible()),
      'send is back, stop hidden');
    firstTitle = await page.locator('[data-testid=conversation-item] .conv-title').first().textContent();
    assert(firstTitle.startsWith('Tell me a story about a dog'), `the conversation is named after its first message: ${firstTitle}`);
    console.log(`  # ${s.len} characters streamed in ${streamed.length} steps; ${tps}`);
    noProblems();
  });

  await check('greedy (temperature 0, seed 42): the streamed answer equals the API\'s for the same request, over two turns; shown as its Markdown', async () => {
    await page.getByTestId('new-chat').click();
    await setSetting(page, 'system-prompt', 'You are a storyteller.');
    await setSetting(page, 'temperature', 0);
    await setSetting(page, 'top-p', 1);
    await setSetting(page, 'max-tokens', 60);
    await setSetting(page, 'seed', 42);
    await page.click('#settings-toggle');
    const api = async body => {
      const res = await fetch(URL_MAIN + '/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`the API answered ${res.status}: ${await res.text()}`);
      return res;
    };
    const history = [{ role: 'system', content: 'You are a storyteller.' }];
    for (const question of ['Tell me about a red ball.', 'What happened next?']) {
      let sent = null;
      const onRequest = r => { if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) sent = r.postData(); };
      page.on('request', onRequest);
      await type(page, question);
      await page.keyboard.press('Enter');
      const s = await waitFinished(page);
      page.off('request', onRequest);
      assert(s.status === 'done', `the answer ended as ${s.status}: ${s.error}`);
      assert(sent, 'the page posted to /v1/chat/completions');
      // What the page asked for: the settings, the system prompt and the whole conversation.
      const body = JSON.parse(sent);
      history.push({ role: 'user', content: question });
      assert(body.stream === true && body.model === modelId, `a streaming request for the model: ${sent}`);
      assert(body.temperature === 0 && body.top_p === 1 && body.max_tokens === 60 && body.seed === 42, `the settings are sent: ${sent}`);
      assert(JSON.stringify(body.messages) === JSON.stringify(history), `the conversation is sent:\n  ${JSON.stringify(body.messages)}\n  want ${JSON.stringify(history)}`);
      const shown = await page.evaluate(() => {
        const st = window.herd.state();
        const c = st.conversations.find(c => c.id === st.current);
        return c.messages[c.messages.length - 1].content;
      });
      // The same request, not streamed, through the API.
      const plain = await (await api({ ...body, stream: false, stream_options: undefined })).json();
      const want = plain.choices[0].message.content;
      assert(want.length > 0, 'the API answer is not empty');
      assert(shown === want, `the page's answer differs from the API's:\n  page ${JSON.stringify(shown)}\n  api  ${JSON.stringify(want)}`);
      // And streamed by hand: the deltas add up to the same text.
      let streamed = '';
      const res = await api(body);
      const text = await res.text();
      for (const line of text.split('\n')) {
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        const d = JSON.parse(line.slice(6)).choices?.[0]?.delta?.content;
        if (d) streamed += d;
      }
      assert(streamed === want, `streaming and not differ: ${JSON.stringify(streamed)} vs ${JSON.stringify(want)}`);
      // Shown as its Markdown rendering, and the token count is the server's.
      const html = await lastAssistant(page).getByTestId('assistant-text').innerHTML();
      const rendered = await page.evaluate(t => {
        const tpl = document.createElement('template');
        tpl.innerHTML = window.herd.renderMarkdown(t);
        return tpl.innerHTML; // serialised as the browser does it, like the innerHTML above
      }, want);
      assert(html === rendered, `the answer is not shown as its Markdown:\n  shown ${html}\n  want  ${rendered}`);
      const stats = await lastAssistant(page).getByTestId('message-stats').textContent();
      assert(stats.startsWith(`${plain.usage.completion_tokens} token`), `the token count is the server's (${plain.usage.completion_tokens}): ${stats}`);
      history.push({ role: 'assistant', content: want });
      console.log(`  # ${JSON.stringify(want.slice(0, 60))}… (${plain.usage.completion_tokens} tokens)`);
    }
    // Back to the first conversation for the checks below.
    await page.locator('[data-testid=conversation-item]', { hasText: firstTitle }).locator('.conv-open').click();
    noProblems();
  });

  // Stops the next answer as soon as it streams. If the model happens to finish its story before
  // the click lands (it may end early), it asks again (at most 5 times).
  async function stopAnAnswer(how) {
    for (let attempt = 1; ; attempt++) {
      const m0 = await metrics(URL_MAIN);
      expectedConsole = [/net::ERR_ABORTED/];
      const s = await sendAndWaitStreaming(page, `Tell me a long story, number ${attempt}.`);
      if (s.status === 'streaming') {
        if (how === 'button') await page.getByTestId('stop-button').click();
        else await page.keyboard.press('Escape');
      }
      const end = await waitFinished(page, 20000);
      if (end.status === 'done' && attempt < 5) { console.log(`  # the answer ended before the stop (${end.len} chars); again`); continue; }
      assert(end.status === 'stopped', `the answer ended as ${end.status} ${end.error}`);
      assert(await lastAssistant(page).getByTestId('stopped-badge').textContent() === 'stopped', 'it is marked stopped');
      assert(end.len > 0, 'the partial answer stays');
      await sleep(300);
      const after = await status(page);
      assert(after.len === end.len, 'no text arrives after the stop');
      const m = await until('herd_running_sequences to return to 0', async () => {
        const x = await metrics(URL_MAIN);
        return x.running === 0 && x;
      }, 5000);
      assert(m.cancelled === m0.cancelled + 1, `the server cancelled the request (herd_cancelled_total ${m0.cancelled} -> ${m.cancelled})`);
      assert(await page.getByTestId('send-button').isVisible(), 'send is back');
      expectedConsole = [];
      return end;
    }
  }

  await check('the stop button ends a long answer; it stays, marked stopped; the server frees the slot', async () => {
    const end = await stopAnAnswer('button');
    console.log(`  # stopped after ${end.len} characters`);
    noProblems();
  });

  await check('Esc stops an answer too (keyboard only)', async () => {
    await page.getByTestId('message-input').focus();
    await stopAnAnswer('escape');
    noProblems();
  });

  await check('HTML in a user message is shown as text, never as markup', async () => {
    await type(page, 'Look: <img src=x onerror=alert(1)> <b>bold?</b>');
    await page.keyboard.press('Enter');
    await waitFinished(page);
    const u = page.locator('[data-testid=user-message]').last();
    assert((await u.textContent()).includes('<img src=x onerror=alert(1)>'), 'the text shows the tag literally');
    assert(await page.locator('#transcript img, #transcript b, #sidebar img').count() === 0, 'no img or b element in the page');
    noProblems();
  });

  await check('HTTP errors are shown in the conversation (max tokens beyond the context: 400)', async () => {
    await setSetting(page, 'max-tokens', 100000);
    expectedConsole = [/status of 400/];
    await type(page, 'This asks for too much.');
    await page.keyboard.press('Enter');
    const s = await waitFinished(page);
    assert(s.status === 'error', `status ${s.status}`);
    assert(/400/.test(s.error) && /context length/.test(s.error), `the error says why: ${s.error}`);
    assert(await lastAssistant(page).getByTestId('regenerate').textContent() === 'Retry', 'a Retry button is offered');
    // Back to a valid setting, Retry succeeds.
    await setSetting(page, 'max-tokens', 40);
    await page.click('#settings-toggle');
    await lastAssistant(page).getByTestId('regenerate').click();
    const r = await waitFinished(page);
    assert(r.status === 'done' && r.len > 0, `the retry worked: ${r.status} ${r.error}`);
    expectedConsole = [];
    noProblems();
  });

  await check('a new chat starts empty; the old one stays in the list and comes back', async () => {
    const n0 = await page.getByTestId('conversation-item').count();
    const old = await page.locator('[data-testid=assistant-message]').count();
    await page.getByTestId('new-chat').click();
    assert(await page.getByTestId('empty-chat').isVisible(), 'the new chat shows its empty state');
    assert(await page.locator('[data-testid=assistant-message], [data-testid=user-message]').count() === 0, 'no messages');
    assert(await page.getByTestId('conversation-item').count() === n0 + 1, 'the list has one more conversation');
    const titles = await page.locator('[data-testid=conversation-item] .conv-title').allTextContents();
    assert(titles.includes(firstTitle), `the old conversation is listed: ${titles}`);
    // The settings were copied to the new chat.
    await page.click('#settings-toggle');
    assert(await page.getByTestId('max-tokens').inputValue() === '40', 'the new chat starts with a copy of the settings');
    await page.click('#settings-toggle');
    // New chat on an empty chat does not pile up empty conversations.
    await page.getByTestId('new-chat').click();
    assert(await page.getByTestId('conversation-item').count() === n0 + 1, 'no second empty chat');
    // Back to the old one.
    await page.locator('[data-testid=conversation-item]', { hasText: firstTitle }).locator('.conv-open').click();
    assert(await page.locator('[data-testid=assistant-message]').count() === old, 'the old messages are back');
    noProblems();
  });

  await check('conversations survive a reload (localStorage); the new chat can be deleted', async () => {
    const titles = await page.locator('[data-testid=conversation-item] .conv-title').allTextContents();
    const texts = await page.locator('[data-testid=assistant-text]').allTextContents();
    await page.reload();
    await until('the model name', async () => (await page.getByTestId('model-name').textContent()) === modelId);
    assert(JSON.stringify(await page.locator('[data-testid=conversation-item] .conv-title').allTextContents()) === JSON.stringify(titles), 'same list');
    assert(JSON.stringify(await page.locator('[data-testid=assistant-text]').allTextContents()) === JSON.stringify(texts), 'same transcript');
    const empty = page.locator('[data-testid=conversation-item]', { hasText: 'New chat' });
    await empty.getByTestId('delete-conversation').click();
    assert(await page.getByTestId('conversation-item').count() === titles.length - 1, 'deleted');
    await page.screenshot({ path: path.join(SHOTS, 'webchat.png') });
    noProblems();
  });

  await check('long code blocks and tables scroll inside the message; the page never scrolls sideways', async () => {
    const long = 'x'.repeat(600);
    const content = [
      '## Markdown', '', 'Some **bold**, *italic*, `code` and a [link](https://example.com).', '',
      '1. first', '2. second', '   - nested', '', '> a quote', '', '```rust', `fn main() { println!("${long}"); }`,
      'let s = "<img src=x onerror=alert(1)>";', '```', '', '| col | ' + 'wide '.repeat(60) + '|', '|---|---|',
      '| 1 | 2 |', '', `A very long word: ${'y'.repeat(400)}`, '', '<img src=x onerror=alert(1)><script>alert(2)</script>',
    ].join('\n');
    await page.evaluate(content => {
      const s = JSON.parse(localStorage.getItem('herd.chat.v1'));
      const id = 'layout-test';
      s.conversations.push({ id, title: 'Layout test', renamed: true, created: Date.now(), updated: Date.now(),
        settings: { system: 'You are terse.', temperature: '0.7', top_p: '0.95', max_tokens: '200', seed: '42' },
        messages: [{ role: 'user', content: 'Show me some Markdown with a ' + 'very '.repeat(80) + 'long line.' },
          { role: 'assistant', content, status: 'done', stats: { tokens: 321, tps: 123.4, ttft: 56 } }] });
      s.current = id;
      localStorage.setItem('herd.chat.v1', JSON.stringify(s));
    }, content);
    await page.reload();
    await page.waitForSelector('[data-testid=assistant-message] pre');
    const check = () => page.evaluate(() => {
      const d = document.documentElement, t = document.getElementById('transcript'), pre = document.querySelector('#transcript pre');
      return { page: d.scrollWidth <= d.clientWidth, transcript: t.scrollWidth <= t.clientWidth,
        preScrolls: pre.scrollWidth > pre.clientWidth, imgs: document.querySelectorAll('#transcript img, #transcript script').length,
        strong: document.querySelectorAll('#transcript strong').length };
    });
    for (const vp of [{ width: 1280, height: 800, shot: 'webchat-markdown.png' }, { width: 390, height: 844, shot: 'webchat-mobile.png' }]) {
      await page.setViewportSize(vp);
      await sleep(100);
      const r = await check();
      assert(r.page && r.transcript, `no sideways scrolling at ${vp.width}px: ${JSON.stringify(r)}`);
      assert(r.preScrolls, 'the long code line scrolls inside its block');
      assert(r.imgs === 0 && r.strong >= 1, `Markdown rendered, HTML escaped: ${JSON.stringify(r)}`);
      if (vp.width === 1280) await page.click('#settings-toggle');
      await page.screenshot({ path: path.join(SHOTS, vp.shot) });
      if (vp.width === 1280) await page.click('#settings-toggle');
    }
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: path.join(SHOTS, 'webchat-dark.png') });
    await page.emulateMedia({ colorScheme: 'light' });
    noProblems();
  });

  if (process.env.HERD_WEB_KEY_URL && process.env.HERD_WEB_KEY) {
    await check('a server with an API key: the page asks for it (again when refused), saves it and works', async () => {
      const base = process.env.HERD_WEB_KEY_URL;
      const kp = watch(await context.newPage());
      expectedConsole = [/status of 401/];
      await kp.goto(base + '/');
      await kp.waitForSelector('#key-dialog[open]');
      await kp.getByTestId('api-key-input').fill('wrong-key');
      await kp.getByTestId('api-key-save').click();
      await kp.waitForSelector('#key-dialog[open]');
      assert(/refused/.test(await kp.locator('#key-text').textContent()), 'it says the key was refused');
      await kp.getByTestId('api-key-input').fill(process.env.HERD_WEB_KEY);
      await kp.keyboard.press('Enter');
      await until('the model name', async () => (await kp.getByTestId('model-name').textContent()) === modelId);
      assert(await kp.evaluate(() => localStorage.getItem('herd.apiKey')) === process.env.HERD_WEB_KEY, 'the key is saved');
      await setSetting(kp, 'max-tokens', 40);
      await kp.click('#settings-toggle');
      await kp.getByTestId('message-input').fill('Hello!');
      await kp.keyboard.press('Enter');
      const s = await waitFinished(kp);
      assert(s.status === 'done' && s.len > 0, `an answer with the key: ${s.status} ${s.error}`);
      await kp.close();
      expectedConsole = [];
    });
  } else {
    console.log('# skipped: the API key checks (set HERD_WEB_KEY_URL and HERD_WEB_KEY)');
  }

  if (process.env.HERD_BIN && process.env.HERD_SERVE_ARGS) {
    await check('a server killed mid-answer: the error is shown, the partial answer kept; Retry works after a restart', async () => {
      const args = JSON.parse(process.env.HERD_SERVE_ARGS);
      const start = port => new Promise((resolve, reject) => {
        const child = spawn(process.env.HERD_BIN, ['serve', ...args, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
        children.push(child);
        child.on('error', reject);
        child.on('exit', code => reject(new Error(`herd serve exited with ${code} before listening`)));
        readline.createInterface({ input: child.stdout }).once('line', line => {
          const m = /^listening on (http:\/\/\S+)$/.exec(line);
          m ? resolve({ child, url: m[1] }) : reject(new Error(`unexpected first line ${line}`));
        });
      });
      let srv = await start(0);
      const port = new URL(srv.url).port;
      origins.push(new URL(srv.url).origin);
      const rp = watch(await context.newPage());
      await rp.goto(srv.url + '/');
      await until('the model name', async () => (await rp.getByTestId('model-name').textContent()) === modelId);
      await setSetting(rp, 'max-tokens', 1500);
      await rp.click('#settings-toggle');
      expectedConsole = [/Failed to load resource/];
      let s;
      for (let attempt = 1; ; attempt++) {
        s = await sendAndWaitStreaming(rp, `Tell me a long story, please (${attempt}).`);
        if (s.status === 'streaming') break;
        assert(attempt < 5, 'every answer ended before the server could be killed');
      }
      srv.child.kill('SIGKILL');
      const e = await waitFinished(rp, 20000);
      assert(e.status === 'error' || e.status === 'done', `status ${e.status}`);
      if (e.status === 'done') console.log('  # the answer finished just before the kill');
      else {
        assert(/Could not reach the server|cut off/.test(e.error), `the error says what happened: ${e.error}`);
        assert(e.len > 0, 'the partial answer stays');
        assert(await rp.locator('[data-testid=assistant-message]').last().getByTestId('regenerate').textContent() === 'Retry', 'Retry is offered');
      }
      srv = await start(port);
      await rp.locator('[data-testid=assistant-message]').last().getByTestId('regenerate').click();
      const r = await waitFinished(rp);
      assert(r.status === 'done' && r.len > 0, `the retry after the restart worked: ${r.status} ${r.error}`);
      srv.child.kill('SIGKILL');
      await rp.close();
      expectedConsole = [];
      noProblems();
    });
  } else {
    console.log('# skipped: the server restart check (set HERD_BIN and HERD_SERVE_ARGS)');
  }

  await check('every request went to the page\'s own server; no console errors', async () => {
    const foreign = requests.filter(u => !u.startsWith('data:') && !origins.includes(new URL(u).origin));
    assert(foreign.length === 0, 'foreign requests: ' + foreign.join(', '));
    noProblems();
    console.log(`  # ${requests.length} requests, all local`);
  });
} catch (e) {
  failed = true;
  if (page) await page.screenshot({ path: path.join(SHOTS, 'webchat-failure.png') }).catch(() => {});
  console.log(`# failed; screenshot of the page: ${path.join(SHOTS, 'webchat-failure.png')}`);
} finally {
  for (const c of children) c.kill('SIGKILL');
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(`# ${passed} checks passed${failed ? ', one failed' : ''} in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
process.exit(failed ? 1 : 0);
