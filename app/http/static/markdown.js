// Model output as Markdown, rendered while it streams, through the vendored streaming-markdown parser
// (vendor/smd.js, vendor.json pins its version). The parser only ever appends DOM nodes, so a delta costs
// the parse of that delta, never a re-render of the answer; an unterminated fence or list is shown as what
// it is so far (a code block, a list) and is closed by `end`.
//
// The output is untrusted. The parser builds elements with createElement and text with text nodes: raw HTML
// in an answer is shown as text, never parsed. What it does not check, this renderer does: link targets (only
// http, https and mailto; a `javascript:` link is rendered without its href), and images, which are shown as
// links rather than loaded (the page's img-src allows only itself anyway).

import * as smd from "./vendor/smd.js";

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

/** The URL to link to, or null when following it could run code (`javascript:`, `data:`, `vbscript:`...). */
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(raw, window.location.href);
  } catch {
    return null;
  }
  return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
}

function element(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** A fenced or indented code block: its language over it, a Copy button, then `<pre><code>`. */
function codeBlock() {
  const figure = element("figure", "code-block");
  const caption = element("figcaption");
  const language = element("span", "code-language");
  language.textContent = "code";
  const copy = element("button", "copy-code");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy the code");
  caption.append(language, copy);
  const pre = element("pre");
  const code = element("code");
  pre.append(code);
  figure.append(caption, pre);
  return { figure, code };
}

function renderer(root) {
  const base = smd.default_renderer(root);
  return {
    data: base.data,
    add_token(data, type) {
      const parent = data.nodes[data.index];
      if (type === smd.CODE_FENCE || type === smd.CODE_BLOCK) {
        const { figure, code } = codeBlock();
        parent.appendChild(figure);
        data.nodes[++data.index] = code;
        return;
      }
      if (type === smd.IMAGE) {
        // Its alt text becomes the link's text; its src the link's href, if safe. Opened elsewhere, as
        // every link of the answer: following one must not navigate the page away from the conversation.
        const link = parent.appendChild(element("a", "image-link"));
        link.rel = "noopener noreferrer nofollow";
        link.target = "_blank";
        data.nodes[++data.index] = link;
        return;
      }
      smd.default_add_token(data, type);
      if (type === smd.LINK || type === smd.RAW_URL) {
        const link = data.nodes[data.index];
        link.rel = "noopener noreferrer nofollow";
        link.target = "_blank";
      }
    },
    end_token: smd.default_end_token,
    add_text: smd.default_add_text,
    set_attr(data, type, value) {
      const node = data.nodes[data.index];
      if (type === smd.HREF || type === smd.SRC) {
        const url = safeUrl(value);
        if (url) node.setAttribute("href", url);
        else node.dataset.refused = value.slice(0, 200); // shown as text only (CSS), never followed
        return;
      }
      if (type === smd.LANG) {
        const language = value.trim().split(/\s/, 1)[0];
        node.dataset.language = language;
        const label = node.closest("figure")?.querySelector(".code-language");
        if (label) label.textContent = language;
        const copy = node.closest("figure")?.querySelector(".copy-code");
        copy?.setAttribute("aria-label", `Copy the ${language} code`);
        return;
      }
      smd.default_set_attr(data, type, value);
    },
  };
}

/** Markdown rendered into `root` as it arrives. */
export class MarkdownView {
  constructor(root) {
    this.root = root;
    this.parser = smd.parser(renderer(root));
  }

  write(text) {
    smd.parser_write(this.parser, text);
  }

  /** The answer is complete: flush what the parser held back (an unterminated fence, a last line). */
  end() {
    smd.parser_end(this.parser);
  }

  /** Replace everything shown with `text` (a regenerated answer that differs from the one shown). */
  reset(text) {
    this.root.replaceChildren();
    this.parser = smd.parser(renderer(this.root));
    this.write(text);
  }
}

/** The Copy buttons of every code block under `container`, with one listener. */
export function handleCopyButtons(container) {
  container.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest(".copy-code") : null;
    if (!button) return;
    const code = button.closest("figure")?.querySelector("code");
    if (!code) return;
    try {
      await navigator.clipboard.writeText(code.textContent);
      button.textContent = "Copied";
    } catch {
      // No clipboard (an insecure context, a denied permission): select the code for Ctrl+C instead.
      window.getSelection()?.selectAllChildren(code);
      button.textContent = "Selected";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
}
