/*
 * policy-qa chat widget — plain modern JavaScript, no build step.
 *
 * Embed with one tag:
 *   <script src="https://HOST/widget.js" data-site-key="demo-site-key"
 *           data-lang="zh|en|auto" data-title="..." data-color="#b22222" defer></script>
 *
 * Optional: data-api="https://other-host" (default: the origin this script came from).
 *
 * Isolation rules this file keeps:
 *  - the only name it adds to the page is the custom element <policy-qa-widget>;
 *  - everything is drawn inside a shadow root whose host resets every property
 *    (all: initial !important), so host CSS cannot reach in and ours cannot leak out;
 *  - styles go through a constructable stylesheet (not subject to the host's CSP);
 *  - every string that comes from the server is inserted as text (textContent /
 *    createTextNode), never parsed as HTML;
 *  - loading the script twice is harmless (one element, no errors).
 */
(() => {
  'use strict';

  const TAG = 'policy-qa-widget';
  const script = document.currentScript;
  if (!window.customElements || !window.fetch || !Element.prototype.attachShadow) return;

  // --- UI strings -------------------------------------------------------------------
  const STRINGS = {
    zh: {
      title: '政策问答助手',
      subtitle: '答案均引自政策文件原文',
      open: '打开政策问答助手',
      close: '关闭问答助手',
      welcome: '您好！请输入您的问题，我会在政策文件中查找答案，并注明出处。',
      inputLabel: '您的问题',
      placeholder: '输入问题，按 Enter 发送',
      inputHint: '按 Enter 发送，Shift+Enter 换行。',
      send: '发送',
      you: '您的问题：',
      assistant: '助手回答：',
      loading: '正在检索文件…',
      answer: '回答',
      sources: '出处',
      others: '其他相关段落',
      noAnswerTitle: '文件中未找到答案',
      noAnswerBody: '已检索的文件中没有明确回答这个问题的内容。以下是最接近的段落，仅供参考：',
      noAnswerEmpty: '已检索的文件中没有明确回答这个问题的内容。',
      closest: '最接近的段落',
      readingAid: '阅读辅助（术语表与数字换算，并非翻译）',
      catalogSource: '目录记录',
      cite: (n, title) => `查看出处 ${n}：${title}`,
      sourceTitle: '原文出处',
      back: '返回对话',
      highlightNote: '黄色高亮为回答引用的句子。',
      passageNote: '浅色底纹为检索到的段落。',
      footer: '回答摘自文件原文，请以正式发布的文件为准。',
      retry: '重试',
      errors: {
        network: '无法连接到问答服务，请检查网络后重试。',
        forbidden: '抱歉，本网站未获授权使用该问答服务。',
        rate: (s) => (s ? `提问过于频繁，请 ${s} 秒后再试。` : '提问过于频繁，请稍后再试。'),
        tooLarge: '问题太长，请精简后再试。',
        invalid: '无法处理这个问题，请换一种说法。',
        notReady: '问答服务正在启动，请稍后再试。',
        timeout: '请求超时，请稍后再试。',
        server: (code) => `问答服务暂时出现问题（错误 ${code}），请稍后再试。`,
        unexpected: '出现了意外问题，请稍后再试。',
      },
    },
    en: {
      title: 'Policy Q&A',
      subtitle: 'Answers quoted from the policy documents',
      open: 'Open the policy Q&A assistant',
      close: 'Close the Q&A assistant',
      welcome:
        'Hello! Ask a question and I will look for the answer in the policy documents, ' +
        'with the sources.',
      inputLabel: 'Your question',
      placeholder: 'Ask a question — Enter to send',
      inputHint: 'Enter sends; Shift+Enter starts a new line.',
      send: 'Send',
      you: 'You asked:',
      assistant: 'Assistant:',
      loading: 'Searching the documents…',
      answer: 'Answer',
      sources: 'Sources',
      others: 'Other related passages',
      noAnswerTitle: 'No answer in these documents',
      noAnswerBody:
        'The documents searched do not clearly answer this question. ' +
        'These are the closest passages, for reference only:',
      noAnswerEmpty: 'The documents searched do not clearly answer this question.',
      closest: 'Closest passages',
      readingAid: 'Reading aid (glossary terms and figures; not a translation)',
      catalogSource: 'From the catalog',
      cite: (n, title) => `Open source ${n}: ${title}`,
      sourceTitle: 'Source passage',
      back: 'Back to the chat',
      highlightNote: 'The sentence quoted in the answer is highlighted.',
      passageNote: 'The shaded text is the retrieved passage.',
      footer: 'Quoted from the source documents; the official text prevails.',
      retry: 'Try again',
      errors: {
        network: 'Cannot reach the Q&A service. Please check your connection and try again.',
        forbidden: 'Sorry, this website is not authorised to use the Q&A service.',
        rate: (s) =>
          s
            ? `Too many questions right now. Please try again in ${s} seconds.`
            : 'Too many questions right now. Please try again shortly.',
        tooLarge: 'Your question is too long. Please shorten it.',
        invalid: 'That question could not be processed. Please rephrase it.',
        notReady: 'The Q&A service is starting up. Please try again shortly.',
        timeout: 'The request timed out. Please try again.',
        server: (code) =>
          `The Q&A service ran into a problem (error ${code}). Please try again later.`,
        unexpected: 'Something unexpected happened. Please try again later.',
      },
    },
  };

  const TIMEOUT_MS = 30000;
  const CONTEXT_CHARS = 280;
  const DEFAULT_COLOR = '#1f4e8c';

  // --- styles (static; the accent colour is set through a custom property) -----------
  const STYLES = `
:host {
  all: initial !important;
  display: block !important;
  position: fixed !important;
  right: 0 !important;
  bottom: 0 !important;
  width: 0 !important;
  height: 0 !important;
  overflow: visible !important;
  visibility: visible !important;
  opacity: 1 !important;
  transform: none !important;
  z-index: 2147483000 !important;
}
[hidden] { display: none !important; }
.root, .root * , .root *::before, .root *::after { box-sizing: border-box; }
.root {
  --accent: ${DEFAULT_COLOR};
  --on-accent: #ffffff;
  --accent-soft: color-mix(in srgb, var(--accent) 10%, #ffffff);
  --accent-line: color-mix(in srgb, var(--accent) 35%, #ffffff);
  --ink: #1f2328;
  --muted: #5b6472;
  --line: #e3e6eb;
  --canvas: #f5f6f8;
  font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Hiragino Sans GB",
    "Microsoft YaHei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", Roboto,
    "Helvetica Neue", Arial, sans-serif;
  font-size: 14px;
  line-height: 1.6;
  font-weight: 400;
  color: var(--ink);
  text-align: left;
  -webkit-font-smoothing: antialiased;
}
button { font: inherit; color: inherit; cursor: pointer; }
button:focus-visible, textarea:focus-visible, summary:focus-visible, [tabindex="-1"]:focus-visible {
  outline: 3px solid var(--accent-line);
  outline-offset: 2px;
}
.sr {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
svg { display: block; fill: none; stroke: currentColor; stroke-width: 2;
  stroke-linecap: round; stroke-linejoin: round; }

/* launcher */
.launcher {
  position: fixed; right: 20px; bottom: 20px; width: 58px; height: 58px;
  border: 0; border-radius: 50%; padding: 0; margin: 0;
  display: flex; align-items: center; justify-content: center;
  background: var(--accent); color: var(--on-accent);
  box-shadow: 0 6px 20px rgba(15, 23, 42, .28), 0 2px 6px rgba(15, 23, 42, .18);
  transition: transform .15s ease, box-shadow .15s ease;
}
.launcher:hover { transform: translateY(-1px); box-shadow: 0 10px 26px rgba(15, 23, 42, .32); }
.launcher:focus-visible { outline: 3px solid var(--accent-line); outline-offset: 3px; }
.launcher svg { width: 26px; height: 26px; }

/* panel */
.panel {
  position: fixed; right: 20px; bottom: 92px;
  width: 388px; height: 640px; max-height: calc(100vh - 112px);
  display: flex; flex-direction: column; overflow: hidden;
  background: #ffffff; border-radius: 16px; border: 1px solid rgba(15, 23, 42, .08);
  box-shadow: 0 18px 50px rgba(15, 23, 42, .25), 0 3px 10px rgba(15, 23, 42, .12);
}
.header {
  flex: none; display: flex; align-items: center; gap: 12px;
  padding: 14px 12px 14px 18px; background: var(--accent); color: var(--on-accent);
}
.header .titles { flex: 1; min-width: 0; }
.header h2 {
  margin: 0; font-size: 16px; font-weight: 600; line-height: 1.35;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
.header p { margin: 2px 0 0; font-size: 12px; opacity: .88; line-height: 1.4; }
.icon-btn {
  flex: none; width: 36px; height: 36px; border-radius: 10px; border: 0; padding: 0;
  display: flex; align-items: center; justify-content: center;
  background: transparent; color: inherit;
}
.icon-btn:hover { background: rgba(255, 255, 255, .16); }
.icon-btn svg { width: 20px; height: 20px; }
.icon-btn:focus-visible { outline: 3px solid currentColor; outline-offset: -3px; }

.body { position: relative; flex: 1; min-height: 0; display: flex; flex-direction: column; }
.chat { flex: 1; min-height: 0; display: flex; flex-direction: column; }
.log {
  position: relative; flex: 1; min-height: 0; overflow-y: auto; overflow-x: hidden;
  padding: 16px 14px 8px; background: var(--canvas); overscroll-behavior: contain;
}
.msg { margin: 0 0 14px; max-width: 100%; overflow-wrap: anywhere; word-break: normal; }
.msg p { margin: 0; }
.msg.user { display: flex; justify-content: flex-end; }
.msg.user .bubble {
  max-width: 85%; background: var(--accent); color: var(--on-accent);
  border-radius: 14px 14px 4px 14px; padding: 9px 13px; white-space: pre-wrap;
}
.msg.bot .bubble {
  max-width: 94%; background: #ffffff; border: 1px solid var(--line);
  border-radius: 14px 14px 14px 4px; padding: 11px 14px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .04);
}
.msg.bot:focus { outline: none; }
.msg.bot:focus-visible .bubble { outline: 2px solid var(--accent-line); outline-offset: 2px; }
.answer-text { font-size: 14.5px; }
.cite {
  display: inline-flex; align-items: center; justify-content: center;
  min-width: 22px; height: 20px; padding: 0 6px; margin: 0 2px; vertical-align: 2px;
  border-radius: 10px; border: 1px solid var(--accent-line);
  background: var(--accent-soft); color: var(--accent);
  font-size: 11.5px; font-weight: 600; line-height: 1;
}
.cite:hover { background: var(--accent); color: var(--on-accent); }
.msg .label {
  margin: 12px 0 6px; font-size: 11.5px; font-weight: 600; letter-spacing: .04em;
  text-transform: uppercase; color: var(--muted);
}
.sources { list-style: none; margin: 0; padding: 0; display: grid; gap: 6px; }
.source {
  width: 100%; display: flex; gap: 10px; align-items: flex-start; text-align: left;
  padding: 8px 10px; margin: 0; border-radius: 10px;
  border: 1px solid var(--line); background: #fbfbfc;
}
.source:hover { border-color: var(--accent-line); background: var(--accent-soft); }
.source .num {
  flex: none; min-width: 22px; height: 20px; padding: 0 6px; border-radius: 10px;
  display: inline-flex; align-items: center; justify-content: center; margin-top: 1px;
  background: var(--accent-soft); color: var(--accent); font-size: 11.5px; font-weight: 600;
  border: 1px solid var(--accent-line);
}
.source .meta { min-width: 0; display: block; }
.source .doc { display: block; font-size: 13px; font-weight: 600; line-height: 1.45; }
.source .sec { display: block; margin-top: 2px; font-size: 12px; color: var(--muted);
  line-height: 1.45; }
.source .snippet { display: block; margin-top: 4px; font-size: 12px; color: var(--ink);
  line-height: 1.5; opacity: .85; }
details { margin-top: 10px; }
summary { cursor: pointer; font-size: 12.5px; color: var(--muted); padding: 2px 0; }
details .sources { margin-top: 6px; }
.aid dl {
  margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 3px 10px;
  font-size: 12.5px; line-height: 1.45;
}
.aid dt { color: var(--ink); font-weight: 600; max-width: 12em; overflow-wrap: anywhere; }
.aid dd { margin: 0; color: var(--muted); }
.msg.bot.no-answer .bubble { border-left: 4px solid #c58b00; }
.no-answer h3 { margin: 0 0 4px; font-size: 14.5px; font-weight: 600; }
.msg .hint { margin-top: 2px; color: var(--muted); font-size: 13px; }
.msg.bot.error .bubble { border-left: 4px solid #c62828; background: #fff8f8; }
.error .retry {
  margin-top: 8px; padding: 5px 12px; border-radius: 8px;
  border: 1px solid #e0b4b4; background: #ffffff; font-size: 13px;
}
.error .retry:disabled { opacity: .5; cursor: default; }
.typing { display: inline-flex; gap: 5px; align-items: center; height: 18px; }
.typing i {
  width: 7px; height: 7px; border-radius: 50%; background: var(--muted); opacity: .35;
  animation: pqa-blink 1.2s infinite ease-in-out;
}
.typing i:nth-child(2) { animation-delay: .2s; }
.typing i:nth-child(3) { animation-delay: .4s; }
.loading-text { margin-left: 10px; color: var(--muted); font-size: 13px; }
@keyframes pqa-blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) {
  .typing i { animation: none; opacity: .6; }
  .launcher { transition: none; }
}

/* composer */
.composer {
  flex: none; display: flex; gap: 8px; align-items: flex-end;
  padding: 10px 12px 6px; border-top: 1px solid var(--line); background: #ffffff;
}
.composer textarea {
  flex: 1; min-width: 0; resize: none; margin: 0; min-height: 42px; max-height: 132px;
  padding: 10px 12px; border: 1px solid #cfd4dc; border-radius: 12px;
  font: inherit; font-size: 14.5px; line-height: 1.45; color: var(--ink); background: #ffffff;
}
.composer textarea::placeholder { color: #8a929e; }
.composer textarea:focus { border-color: var(--accent); outline: 3px solid var(--accent-soft); }
.send {
  flex: none; width: 42px; height: 42px; border-radius: 12px; border: 0; padding: 0;
  display: flex; align-items: center; justify-content: center;
  background: var(--accent); color: var(--on-accent);
}
.send:disabled { opacity: .45; cursor: default; }
.send svg { width: 20px; height: 20px; }
.footer {
  flex: none; margin: 0; padding: 2px 14px 10px; background: #ffffff;
  font-size: 11.5px; color: #7a828e; text-align: center;
}

/* source passage view (covers the chat) */
.source-view {
  position: absolute; inset: 0; display: flex; flex-direction: column; background: #ffffff;
}
.sv-head {
  flex: none; display: flex; align-items: center; gap: 8px;
  padding: 8px 12px; border-bottom: 1px solid var(--line);
}
.sv-head .icon-btn { color: var(--ink); }
.sv-head .icon-btn:hover { background: var(--canvas); }
.sv-head .icon-btn:focus-visible { outline: 3px solid var(--accent-line); outline-offset: -1px; }
.sv-head h3 { margin: 0; font-size: 15px; font-weight: 600; }
.sv-meta { flex: none; padding: 12px 18px 10px; border-bottom: 1px solid var(--line); }
.sv-meta .doc { margin: 0; font-size: 14px; font-weight: 600; line-height: 1.5; }
.sv-meta .sec { margin: 4px 0 0; font-size: 12.5px; color: var(--muted); line-height: 1.5; }
.sv-meta .note { margin: 8px 0 0; font-size: 12px; color: var(--muted); }
.sv-text {
  position: relative; flex: 1; min-height: 0; overflow-y: auto; overflow-x: hidden;
  margin: 0; padding: 14px 18px 24px; white-space: pre-wrap; overflow-wrap: anywhere;
  font-size: 14.5px; line-height: 1.85; overscroll-behavior: contain;
}
.sv-text .ctx { color: #8a929e; }
.sv-text .passage { background: var(--accent-soft); border-radius: 3px;
  box-decoration-break: clone; -webkit-box-decoration-break: clone; }
.sv-text mark {
  background: #ffe27a; color: #1a1a1a; border-radius: 3px; padding: 1px 0;
  box-decoration-break: clone; -webkit-box-decoration-break: clone;
  box-shadow: 0 1px 0 #e0b800;
}

/* small screens: the panel takes the whole viewport */
@media (max-width: 480px) {
  .panel {
    right: 0; bottom: 0; left: 0; top: 0; width: auto; height: auto; max-height: none;
    border-radius: 0; border: 0;
  }
  .launcher { right: 16px; bottom: 16px; }
  .root.open .launcher { display: none; }
  .msg.user .bubble { max-width: 90%; }
  .msg.bot .bubble { max-width: 100%; }
}
`;

  // --- small DOM helpers (text only; never innerHTML) ----------------------------------
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    append(el, children);
    return el;
  }

  function append(parent, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      parent.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return parent;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function icon(...paths) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    for (const d of paths) {
      const path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      svg.append(path);
    }
    return svg;
  }
  const ICONS = {
    chat: [
      'M21 12a8.5 8.5 0 0 1-12.4 7.55L3 21l1.45-5.3A8.5 8.5 0 1 1 21 12z',
      'M8.5 10.5h7', 'M8.5 14h4.5',
    ],
    close: ['M6 6l12 12', 'M18 6L6 18'],
    down: ['M6 9l6 6 6-6'],
    send: ['M4 12l16-8-6 16-2.5-6.5z', 'M11.5 13.5L20 4'],
    back: ['M15 6l-6 6 6 6'],
  };

  function pickLang(value) {
    const wanted = (value || '').trim().toLowerCase();
    if (wanted === 'zh' || wanted === 'en') return wanted;
    const candidates = [document.documentElement.lang, ...(navigator.languages || []),
      navigator.language];
    for (const tag of candidates) {
      const code = (tag || '').trim().toLowerCase();
      if (code.startsWith('zh')) return 'zh';
      if (code) return 'en';
    }
    return 'en';
  }

  function parseColor(value) {
    const color = (value || '').trim();
    if (!color || !CSS.supports('color', color)) return null;
    return color;
  }

  // Text colour on the accent: white unless the accent is light (hex colours only).
  function onAccent(color) {
    const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
    if (!m) return '#ffffff';
    let hex = m[1];
    if (hex.length === 3) hex = [...hex].map((c) => c + c).join('');
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    return luminance > 0.45 ? '#1a1a1a' : '#ffffff';
  }

  function retryAfterSeconds(header) {
    if (!header) return null;
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(1, Math.ceil(seconds));
    const date = Date.parse(header);
    return Number.isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
  }

  class ServiceError extends Error {
    constructor(kind, status, retryAfter) {
      super(kind);
      this.kind = kind;
      this.status = status || 0;
      this.retryAfter = retryAfter || null;
    }
  }

  let counter = 0;

  class PolicyQaWidget extends HTMLElement {
    #els = {};
    #lang = 'en';
    #t = STRINGS.en;
    #api = '';
    #siteKey = '';
    #busy = false;
    #lastQuestion = '';
    #documents = new Map();
    #catalog = null;
    #catalogPending = null;
    #sourceOpener = null;
    #uid = `pqa${++counter}`;
    #built = false;

    connectedCallback() {
      if (this.#built) return;
      this.#built = true;
      const data = this.dataset;
      this.#lang = pickLang(data.lang);
      this.#t = STRINGS[this.#lang];
      this.#api = (data.api || '').replace(/\/+$/, '');
      this.#siteKey = data.siteKey || '';
      this.#build(data.title, parseColor(data.color));
    }

    // --- construction ---------------------------------------------------------------
    #build(title, color) {
      const t = this.#t;
      const shadow = this.attachShadow({ mode: 'open' });
      if ('adoptedStyleSheets' in shadow && 'replaceSync' in CSSStyleSheet.prototype) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(STYLES);
        shadow.adoptedStyleSheets = [sheet];
      } else {
        shadow.append(h('style', { text: STYLES }));
      }
      const id = (name) => `${this.#uid}-${name}`;
      const els = this.#els;
      const heading = (title || '').trim() || t.title;

      els.launcher = h('button', {
        type: 'button', class: 'launcher', 'aria-label': t.open, title: t.open,
        'aria-expanded': 'false', 'aria-controls': id('panel'),
        onclick: () => this.#toggle(),
      }, icon(...ICONS.chat));

      els.log = h('div', {
        class: 'log', id: id('log'), role: 'log', 'aria-live': 'polite',
        'aria-relevant': 'additions', 'aria-label': heading,
      });
      els.input = h('textarea', {
        id: id('input'), rows: '1', maxlength: '2000', placeholder: t.placeholder,
        'aria-label': t.inputLabel, 'aria-describedby': id('hint'), enterkeyhint: 'send',
        autocomplete: 'off',
      });
      els.input.addEventListener('keydown', (e) => this.#onInputKey(e));
      els.input.addEventListener('input', () => this.#autosize());
      els.send = h('button', {
        type: 'submit', class: 'send', 'aria-label': t.send, title: t.send,
      }, icon(...ICONS.send));
      const form = h('form', {
        class: 'composer', onsubmit: (e) => { e.preventDefault(); this.#submit(); },
      }, els.input, els.send, h('span', { class: 'sr', id: id('hint'), text: t.inputHint }));
      els.chat = h('div', { class: 'chat' }, els.log, form,
        h('p', { class: 'footer', text: t.footer }));

      els.sourceView = h('section', {
        class: 'source-view', hidden: true, 'aria-labelledby': id('sv-title'),
      });
      els.close = h('button', {
        type: 'button', class: 'icon-btn', 'aria-label': t.close, title: t.close,
        onclick: () => this.#close(),
      }, icon(...ICONS.close));
      els.panel = h('div', {
        class: 'panel', id: id('panel'), role: 'dialog', 'aria-modal': 'false',
        'aria-labelledby': id('title'), hidden: true,
      },
      h('div', { class: 'header' },
        h('div', { class: 'titles' },
          h('h2', { id: id('title'), text: heading }),
          h('p', { text: t.subtitle })),
        els.close),
      h('div', { class: 'body' }, els.chat, els.sourceView));
      els.panel.addEventListener('keydown', (e) => this.#onPanelKey(e));
      els.launcher.addEventListener('keydown', (e) => {
        if (e.key === 'Escape' && !els.panel.hidden) { e.preventDefault(); this.#close(); }
      });

      els.root = h('div', { class: 'root', lang: this.#lang === 'zh' ? 'zh-CN' : 'en' },
        els.panel, els.launcher);
      if (color) {
        // CSSOM, not a style attribute: allowed under any CSP.
        els.root.style.setProperty('--accent', color);
        els.root.style.setProperty('--on-accent', onAccent(color));
      }
      shadow.append(els.root);
      this.#addBot([h('p', { text: t.welcome })]);
    }

    // --- open / close ---------------------------------------------------------------
    #toggle() {
      if (this.#els.panel.hidden) this.#open(); else this.#close();
    }

    #open() {
      const { panel, launcher, root, input } = this.#els;
      panel.hidden = false;
      root.classList.add('open');
      launcher.setAttribute('aria-expanded', 'true');
      launcher.setAttribute('aria-label', this.#t.close);
      launcher.title = this.#t.close;
      launcher.replaceChildren(icon(...ICONS.down));
      this.#scrollLog();
      input.focus({ preventScroll: true });
    }

    #close() {
      const { panel, launcher, root } = this.#els;
      this.#closeSource(false);
      panel.hidden = true;
      root.classList.remove('open');
      launcher.setAttribute('aria-expanded', 'false');
      launcher.setAttribute('aria-label', this.#t.open);
      launcher.title = this.#t.open;
      launcher.replaceChildren(icon(...ICONS.chat));
      launcher.focus({ preventScroll: true });
    }

    #onPanelKey(e) {
      if (e.key !== 'Escape' || e.isComposing) return;
      e.preventDefault();
      e.stopPropagation();
      if (!this.#els.sourceView.hidden) this.#closeSource(true);
      else this.#close();
    }

    #onInputKey(e) {
      // Enter sends, Shift+Enter is a new line; never while an IME is composing (Chinese).
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.#submit();
      }
    }

    #autosize() {
      const input = this.#els.input;
      input.style.height = 'auto';
      input.style.height = `${Math.min(input.scrollHeight + 2, 132)}px`;
    }

    // Show the newest message; a reply taller than the log is shown from its question.
    #scrollLog(target) {
      const log = this.#els.log;
      requestAnimationFrame(() => {
        if (target && target.offsetHeight > log.clientHeight - 24) {
          const question = target.previousElementSibling;
          const fits = question && question.classList.contains('user')
            && target.offsetTop - question.offsetTop < log.clientHeight / 3;
          log.scrollTop = Math.max(0, (fits ? question : target).offsetTop - 12);
        } else {
          log.scrollTop = log.scrollHeight;
        }
      });
    }

    // --- messages ---------------------------------------------------------------------
    #addUser(text) {
      const msg = h('div', { class: 'msg user' },
        h('div', { class: 'bubble' }, h('span', { class: 'sr', text: this.#t.you }), text));
      this.#els.log.append(msg);
      this.#scrollLog();
      return msg;
    }

    #addBot(children, extraClass, label) {
      const msg = h('div', {
        class: `msg bot${extraClass ? ` ${extraClass}` : ''}`, tabindex: '-1',
        'aria-label': label,
      }, h('div', { class: 'bubble' }, h('span', { class: 'sr', text: this.#t.assistant }),
        ...children));
      this.#els.log.append(msg);
      this.#scrollLog(msg);
      return msg;
    }

    // --- asking ---------------------------------------------------------------------
    #submit(retryText) {
      if (this.#busy) return;
      const input = this.#els.input;
      const question = (retryText ?? input.value).trim();
      if (!question) { input.focus(); return; }
      if (retryText === undefined) {
        input.value = '';
        this.#autosize();
      }
      this.#ask(question);
    }

    async #ask(question) {
      const t = this.#t;
      this.#busy = true;
      this.#lastQuestion = question;
      this.#els.send.disabled = true;
      this.#addUser(question);
      const loading = this.#addBot([
        h('span', { class: 'typing', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
        h('span', { class: 'loading-text', text: t.loading }),
      ], 'loading');
      this.#els.log.setAttribute('aria-busy', 'true');
      let message;
      try {
        const data = await this.#request('/v1/ask', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ question, top_k: 5 }),
        });
        if (this.#lang === 'en') await this.#loadCatalog();
        loading.remove();
        message = this.#renderResponse(data);
      } catch (err) {
        loading.remove();
        const known = err instanceof ServiceError ? err : new ServiceError('unexpected');
        message = this.#renderError(known);
      } finally {
        this.#busy = false;
        this.#els.send.disabled = false;
        this.#els.log.removeAttribute('aria-busy');
      }
      if (message && !this.#els.panel.hidden) message.focus({ preventScroll: true });
    }

    async #request(path, init) {
      const headers = { Accept: 'application/json', ...(init.headers || {}) };
      if (this.#siteKey) headers['X-Site-Key'] = this.#siteKey;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
      let response;
      try {
        response = await fetch(this.#api + path, {
          ...init, headers, mode: 'cors', credentials: 'omit', signal: controller.signal,
        });
      } catch (err) {
        if (controller.signal.aborted) throw new ServiceError('timeout');
        // A refused origin fails the CORS preflight, which looks like a network error.
        // If the service itself answers, the refusal is the likelier cause.
        throw new ServiceError((await this.#reachable()) ? 'forbidden' : 'network');
      } finally {
        clearTimeout(timer);
      }
      if (!response.ok) {
        const status = response.status;
        if (status === 429) {
          const retryAfter = retryAfterSeconds(response.headers.get('Retry-After'));
          throw new ServiceError('rate', status, retryAfter);
        }
        const kinds = {
          403: 'forbidden', 413: 'tooLarge', 422: 'invalid', 503: 'notReady', 504: 'timeout',
        };
        throw new ServiceError(kinds[status] || (status >= 500 ? 'server' : 'invalid'), status);
      }
      try {
        return await response.json();
      } catch (err) {
        throw new ServiceError('server', response.status);
      }
    }

    async #reachable() {
      try {
        const probe = { mode: 'no-cors', credentials: 'omit', cache: 'no-store' };
        await fetch(`${this.#api}/healthz`, probe);
        return true;
      } catch (err) {
        return false;
      }
    }

    async #loadCatalog() {
      if (this.#catalog) return;
      if (!this.#catalogPending) {
        this.#catalogPending = this.#request('/v1/documents', { method: 'GET' })
          .then((data) => {
            this.#catalog = new Map((data.documents || []).map((d) => [String(d.id), d]));
          })
          .catch(() => {})
          .finally(() => { this.#catalogPending = null; });
      }
      await this.#catalogPending;
    }

    // Titles in the UI language when the catalog has one (passages carry the original).
    #title(passage) {
      const entry = this.#catalog && this.#catalog.get(String(passage.doc_id));
      if (this.#lang === 'en' && entry && entry.title_en) return String(entry.title_en);
      return String(passage.title || passage.doc_id || '');
    }

    // --- rendering responses ------------------------------------------------------------
    #renderResponse(data) {
      const t = this.#t;
      const passages = Array.isArray(data && data.passages) ? data.passages : [];
      const byRank = new Map(passages.map((p) => [Number(p.rank), p]));
      const answer = data && data.answer;
      if (!answer || data.no_answer) {
        // The service says why, in the question's language; the UI strings are a fallback.
        const reason = data && data.not_stated && String(data.not_stated.message || '');
        const children = [
          h('h3', { text: t.noAnswerTitle }),
          h('p', { class: 'hint not-stated',
            text: reason || (passages.length ? t.noAnswerBody : t.noAnswerEmpty) }),
        ];
        if (passages.length) {
          children.push(h('p', { class: 'label', text: t.closest }),
            this.#sourceList(passages, true));
        }
        return this.#addBot(children, 'no-answer', t.noAnswerTitle);
      }

      const text = h('p', { class: 'answer-text' });
      const parts = String(answer.text || '').split(/\[(\d{1,3})\]/);
      parts.forEach((part, i) => {
        if (i % 2 === 0) {
          if (part) text.append(document.createTextNode(part));
          return;
        }
        const passage = byRank.get(Number(part));
        if (!passage) {
          text.append(document.createTextNode(`[${part}]`));
          return;
        }
        text.append(h('button', {
          type: 'button', class: 'cite', 'data-rank': part,
          'aria-label': t.cite(part, this.#describe(passage)),
          title: this.#describe(passage),
          onclick: (e) => this.#openSource(passage, e.currentTarget),
        }, part));
      });
      const cited = [...new Set((answer.citations || []).map(Number))]
        .map((rank) => byRank.get(rank)).filter(Boolean);
      // A catalog answer the returned passages do not hold opens its place in the document.
      const uncited = (Array.isArray(answer.quotes) ? answer.quotes : [])
        .filter((q) => q && q.rank == null && q.doc_id);
      for (const quote of uncited) {
        const origin = { ...quote, rank: '·', section: t.catalogSource,
          title: quote.doc_id, highlights: [{ start: quote.start, end: quote.end }] };
        text.append(h('button', {
          type: 'button', class: 'cite', 'data-rank': '·',
          'aria-label': t.cite('·', this.#title(origin)), title: this.#title(origin),
          onclick: (e) => this.#openSource(origin, e.currentTarget),
        }, '·'));
      }
      const others = passages.filter((p) => !cited.includes(p));
      const children = [text];
      const aid = this.#readingAid(answer.reading_aid);
      if (aid) children.push(aid);
      if (cited.length) {
        children.push(h('p', { class: 'label', text: t.sources }), this.#sourceList(cited, false));
      }
      if (others.length) {
        children.push(h('details', {},
          h('summary', {}, `${t.others} (${others.length})`),
          this.#sourceList(others, true)));
      }
      return this.#addBot(children, 'answer', t.answer);
    }

    // For English questions: the glossary's English for the answer's Chinese terms and
    // its figures in English, built by the service from the quoted text alone.
    #readingAid(aid) {
      if (!aid || typeof aid !== 'object') return null;
      const rows = ['catalog', 'terms', 'figures']
        .flatMap((key) => (Array.isArray(aid[key]) ? aid[key] : []))
        .filter((g) => g && g.text && g.english);
      if (!rows.length) return null;
      return h('div', { class: 'aid', lang: 'en' },
        h('p', { class: 'label', text: this.#t.readingAid }),
        h('dl', {}, rows.flatMap((g) => [
          h('dt', { lang: 'zh', text: String(g.text) }),
          h('dd', { text: String(g.english) }),
        ])));
    }

    // The passage's sentence closest to the question when the service names it, else its
    // opening: what a reader scanning the list needs to see.
    #snippet(passage) {
      const text = String(passage.text || '');
      const best = passage.best_sentence;
      let piece = text;
      if (best && Number.isFinite(Number(best.start)) && Number.isFinite(Number(passage.start))) {
        const from = Number(best.start) - Number(passage.start);
        const to = Number(best.end) - Number(passage.start);
        if (from >= 0 && to > from && to <= text.length) piece = text.slice(from, to);
      }
      return piece.replace(/\s+/g, ' ').trim();
    }

    #describe(passage) {
      const section = String(passage.section || '').trim();
      const title = this.#title(passage);
      return section ? `${title} › ${section}` : title;
    }

    #sourceList(passages, withSnippet) {
      return h('ol', { class: 'sources' }, passages.map((passage) => {
        const section = String(passage.section || '').trim();
        const snippetText = this.#snippet(passage);
        const button = h('button', {
          type: 'button', class: 'source', 'data-rank': String(passage.rank),
          onclick: (e) => this.#openSource(passage, e.currentTarget),
        },
        h('span', { class: 'num', 'aria-hidden': 'true', text: String(passage.rank) }),
        h('span', { class: 'meta' },
          h('span', { class: 'doc', text: this.#title(passage) }),
          section ? h('span', { class: 'sec', text: section }) : null,
          withSnippet && snippetText
            ? h('span', { class: 'snippet', text: snippetText.length > 90
              ? `${snippetText.slice(0, 90)}…` : snippetText })
            : null));
        return h('li', {}, button);
      }));
    }

    #renderError(err) {
      const t = this.#t;
      const messages = t.errors;
      let text;
      if (err.kind === 'rate') text = messages.rate(err.retryAfter);
      else if (err.kind === 'server') text = messages.server(err.status || '5xx');
      else text = messages[err.kind] || messages.unexpected;
      const question = this.#lastQuestion;
      const children = [h('p', { text })];
      if (err.kind !== 'forbidden' && err.kind !== 'tooLarge' && err.kind !== 'invalid') {
        const retry = h('button', {
          type: 'button', class: 'retry', text: t.retry,
          onclick: () => this.#submit(question),
        });
        if (err.retryAfter) {
          retry.disabled = true;
          setTimeout(() => { retry.disabled = false; }, err.retryAfter * 1000);
        }
        children.push(retry);
      }
      const msg = this.#addBot(children, 'error', text);
      msg.dataset.error = err.kind;
      if (err.status) msg.dataset.status = String(err.status);
      return msg;
    }

    // --- the source passage view ---------------------------------------------------------
    #openSource(passage, opener) {
      const t = this.#t;
      const view = this.#els.sourceView;
      const uid = this.#uid;
      this.#sourceOpener = opener || null;
      const start = Number(passage.start);
      const end = Number(passage.end);
      const passageText = String(passage.text || '');
      const highlights = (Array.isArray(passage.highlights) ? passage.highlights : [])
        .map((s) => [Number(s.start), Number(s.end)])
        .filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b) && b > a)
        .sort((a, b) => a[0] - b[0]);

      const back = h('button', {
        type: 'button', class: 'icon-btn', 'aria-label': t.back, title: t.back,
        onclick: () => this.#closeSource(true),
      }, icon(...ICONS.back));
      const section = String(passage.section || '').trim();
      const passageSpan = h('span', { class: 'passage' },
        this.#marked(passageText, Number.isFinite(start) ? start : 0, highlights));
      const textBox = h('div', { class: 'sv-text', tabindex: '0', 'aria-label': t.sourceTitle },
        passageSpan);
      view.replaceChildren(
        h('div', { class: 'sv-head' }, back,
          h('h3', { id: `${uid}-sv-title`, text: `${t.sourceTitle} [${passage.rank}]` })),
        h('div', { class: 'sv-meta' },
          h('p', { class: 'doc', text: this.#title(passage) }),
          section ? h('p', { class: 'sec', text: section }) : null,
          h('p', { class: 'note', text: highlights.length ? t.highlightNote : t.passageNote })),
        textBox);
      view.hidden = false;
      this.#els.chat.inert = true;
      back.focus({ preventScroll: true });
      this.#revealMark(textBox);

      // Surrounding text from the document, when it matches the passage offsets exactly.
      if (Number.isFinite(start) && Number.isFinite(end) && passage.doc_id) {
        this.#documentText(String(passage.doc_id)).then((doc) => {
          if (view.hidden || !passageSpan.isConnected || typeof doc !== 'string') return;
          if (doc.slice(start, end) !== passageText) return;
          const from = Math.max(0, start - CONTEXT_CHARS);
          const to = Math.min(doc.length, end + CONTEXT_CHARS);
          const before = (from > 0 ? '…' : '') + doc.slice(from, start);
          const after = doc.slice(end, to) + (to < doc.length ? '…' : '');
          if (before) passageSpan.before(h('span', { class: 'ctx', text: before }));
          if (after) passageSpan.after(h('span', { class: 'ctx', text: after }));
          this.#revealMark(textBox);
        }).catch(() => {});
      }
    }

    // The passage text with each highlight (document offsets) wrapped in <mark>.
    #marked(text, base, spans) {
      const nodes = [];
      let cursor = 0;
      for (const [a, b] of spans) {
        const from = Math.max(cursor, a - base);
        const to = Math.min(text.length, b - base);
        if (to <= from) continue;
        if (from > cursor) nodes.push(document.createTextNode(text.slice(cursor, from)));
        nodes.push(h('mark', { text: text.slice(from, to) }));
        cursor = to;
      }
      if (cursor < text.length) nodes.push(document.createTextNode(text.slice(cursor)));
      return nodes;
    }

    #revealMark(box) {
      requestAnimationFrame(() => {
        const target = box.querySelector('mark') || box.querySelector('.passage');
        if (!target) return;
        box.scrollTop = Math.max(0, target.offsetTop - box.clientHeight / 4);
      });
    }

    #documentText(docId) {
      if (!this.#documents.has(docId)) {
        const path = `/v1/documents/${encodeURIComponent(docId)}`;
        const pending = this.#request(path, { method: 'GET' })
          .then((doc) => doc.text)
          .catch((err) => { this.#documents.delete(docId); throw err; });
        this.#documents.set(docId, pending);
      }
      return this.#documents.get(docId);
    }

    #closeSource(restoreFocus) {
      const { sourceView, chat } = this.#els;
      if (sourceView.hidden) return;
      sourceView.hidden = true;
      sourceView.replaceChildren();
      chat.inert = false;
      const opener = this.#sourceOpener;
      this.#sourceOpener = null;
      if (restoreFocus) {
        if (opener && opener.isConnected) opener.focus({ preventScroll: true });
        else this.#els.input.focus({ preventScroll: true });
      }
    }
  }

  if (!customElements.get(TAG)) customElements.define(TAG, PolicyQaWidget);

  function apiBase() {
    const explicit = script && script.dataset.api;
    try {
      if (explicit) return new URL(explicit, location.href).href;
      if (script && script.src) return new URL(script.src, location.href).origin;
    } catch (err) {
      // fall through to the page's own origin
    }
    return location.origin;
  }

  function mount() {
    // Loaded twice (or placed by hand): one widget is enough.
    if (document.querySelector(TAG)) return;
    const el = document.createElement(TAG);
    const data = script ? script.dataset : {};
    for (const key of ['siteKey', 'lang', 'title', 'color']) {
      if (data[key]) el.dataset[key] = data[key];
    }
    el.dataset.api = apiBase();
    document.body.append(el);
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
