/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the browser
 * tests and the page's benchmark (`bench_web.ts`): open a page, evaluate in it, collect console
 * errors and uncaught exceptions (a worker's too), take a screenshot. WebGL runs on SwiftShader;
 * with `webgpu`, WebGPU too (SwiftShader's Vulkan). No npm package and no browser download: a
 * WebSocket to the browser's endpoint.
 *
 * @module
 */

/** A page in headless Chromium. */
export interface Page {
  /** Opens `url` and waits for its load event. */
  goto(url: string): Promise<void>;
  /** Evaluates an expression in the page (promises awaited) and returns its value. */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the page as shown. */
  screenshot(): Promise<Uint8Array>;
  /** Console errors and uncaught exceptions so far. */
  readonly errors: string[];
}

/**
 * The Chromium executable, if one is installed.
 * @returns its name or path
 */
export async function findChromium(): Promise<string | undefined> {
  for (const exe of ["chromium", "/usr/bin/chromium"]) {
    try {
      const r = await new Deno.Command(exe, { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
      if (r.success) return exe;
    } catch {
      // not installed
    }
  }
  return undefined;
}

/** Options of {@linkcode withChromium}. */
export interface ChromiumOptions {
  /** Offer WebGPU on SwiftShader's Vulkan (no GPU needed); without it a page gets none here. */
  readonly webgpu?: boolean;
  /** The window's size (default 1100 x 900). */
  readonly window?: readonly [number, number];
}

/**
 * Starts Chromium, runs `fn` with one page, and closes it.
 * @param exe the executable
 * @param fn what to do with the page
 * @param options WebGPU, the window's size
 * @returns what `fn` returns
 */
export async function withChromium<T>(
  exe: string,
  fn: (page: Page) => Promise<T>,
  { webgpu = false, window = [1100, 900] }: ChromiumOptions = {},
): Promise<T> {
  const profile = await Deno.makeTempDir();
  const child = new Deno.Command(exe, {
    args: [
      "--headless",
      "--no-sandbox",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--enable-unsafe-swiftshader", // WebGL on the CPU, where there is no GPU
      ...(webgpu ? ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"] : []),
      `--window-size=${window[0]},${window[1]}`,
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    // The browser prints its endpoint on stderr; the rest of stderr is drained.
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    let endpoint: string | undefined;
    while (!endpoint) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`chromium exited before listening:\n${seen.slice(-1000)}`);
      seen += value;
      endpoint = /DevTools listening on (ws:\/\/\S+)/.exec(seen)?.[1];
    }
    (async () => {
      while (!(await lines.read()).done) { /* drain */ }
    })();
    const ws = new WebSocket(endpoint);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = fail;
    });
    let next = 0;
    const waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
    const events: ((m: { method: string; params: Record<string, unknown> }) => void)[] = [];
    // A browser that goes away (crashed, killed) fails what waits on it instead of hanging.
    ws.onclose = () => {
      for (const w of waiting.values()) w.fail(new Error("chromium closed the connection"));
      waiting.clear();
    };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.id !== undefined) {
        const w = waiting.get(m.id)!;
        waiting.delete(m.id);
        if (m.error) w.fail(new Error(`${m.error.message}`));
        else w.ok(m.result);
      } else events.forEach((f) => f(m));
    };
    const send = <R>(method: string, params: Record<string, unknown> = {}, sessionId?: string) =>
      new Promise<R>((ok, fail) => {
        const id = ++next;
        waiting.set(id, { ok: ok as (v: unknown) => void, fail });
        ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
      });
    const { targetId } = await send<{ targetId: string }>("Target.createTarget", {
      url: "about:blank",
    });
    const { sessionId } = await send<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const errors: string[] = [];
    let loaded: (() => void) | undefined;
    events.push(({ method, params }) => {
      if (method === "Runtime.consoleAPICalled" && params.type === "error") {
        errors.push(JSON.stringify(params.args));
      } else if (method === "Runtime.exceptionThrown") {
        errors.push(JSON.stringify(params.exceptionDetails));
      } else if (method === "Log.entryAdded") {
        const entry = params.entry as { level: string; text: string; url?: string };
        if (entry.level === "error") errors.push(`${entry.text} ${entry.url ?? ""}`);
      } else if (method === "Page.loadEventFired") loaded?.();
      else if (method === "Target.attachedToTarget") {
        // A worker of the page: its console errors and exceptions count too.
        send("Runtime.enable", {}, params.sessionId as string).catch(() => {});
      }
    });
    for (const domain of ["Runtime", "Log", "Page"]) await send(`${domain}.enable`, {}, sessionId);
    await send("Target.setAutoAttach", {
      autoAttach: true,
      waitForDebuggerOnStart: false,
      flatten: true,
    }, sessionId);
    const page: Page = {
      errors,
      async goto(url) {
        const done = new Promise<void>((ok) => (loaded = ok));
        await send("Page.navigate", { url }, sessionId);
        await done;
      },
      async evaluate<T>(expression: string) {
        const r = await send<{ result: { value: T }; exceptionDetails?: unknown }>(
          "Runtime.evaluate",
          { expression, awaitPromise: true, returnByValue: true },
          sessionId,
        );
        if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
        return r.result.value;
      },
      async screenshot() {
        const { data } = await send<{ data: string }>("Page.captureScreenshot", {
          format: "png",
        }, sessionId);
        return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      },
    };
    try {
      return await fn(page);
    } finally {
      ws.close();
    }
  } finally {
    child.kill();
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
