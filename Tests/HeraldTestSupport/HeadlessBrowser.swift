import Foundation

/// What a page showed in a real browser before and after a click (`browse`).
package struct BrowsedPage: Decodable, Sendable {
  package struct Before: Decodable, Sendable {
    package var title: String
    package var text: String
    package var buttons: [String]
    package var scripts: Int
    /// The page's width against the window's: wider means it does not fit a phone.
    package var width: Int
    package var viewport: Int
  }
  package struct After: Decodable, Sendable {
    package var title: String
    package var text: String
  }
  package var before: Before
  package var after: After
}

/// Loads `url` in headless Chromium (Debian's `chromium`, which scripts/test installs) in a
/// phone-sized window, clicks the button whose value is `click` (submitting its form), waits for
/// the next page and answers both pages' text; screenshots of both are saved as test artefacts
/// (`<HERALD_TEST_ARTIFACTS or the temporary folder>/<name>-before.png`, `-after.png`). Chromium
/// is driven over the DevTools protocol on a pipe, by a Python script, so nothing but the browser
/// and Python is needed.
package func browse(_ url: String, click: String, name: String) async throws -> BrowsedPage {
  let chromium = ProcessInfo.processInfo.environment["HERALD_TEST_CHROMIUM"] ?? "/usr/bin/chromium"
  guard FileManager.default.isExecutableFile(atPath: chromium) else {
    throw TestSetupError("\(chromium) is missing: run scripts/test, which installs Debian's chromium")
  }
  let artifacts =
    ProcessInfo.processInfo.environment["HERALD_TEST_ARTIFACTS"] ?? FileManager.default.temporaryDirectory.path + "/herald-test-artifacts"
  try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
  let script = FileManager.default.temporaryDirectory.appendingPathComponent("herald-browse-\(UUID().uuidString).py").path
  try browseScript.write(toFile: script, atomically: true, encoding: .utf8)
  defer { try? FileManager.default.removeItem(atPath: script) }
  let python = ProcessInfo.processInfo.environment["HERALD_TEST_PYTHON"] ?? "/usr/bin/python3"
  let (status, output) = try await SpawnedProcess.run(
    python, [script, chromium, url, click, "\(artifacts)/\(name)-before.png", "\(artifacts)/\(name)-after.png"])
  guard status == 0, let line = output.split(separator: "\n").last, line.hasPrefix("{") else {
    throw TestSetupError("the headless browser failed (status \(status)): \(output)")
  }
  return try JSONDecoder().decode(BrowsedPage.self, from: Data(line.utf8))
}

private let browseScript = #"""
  # Drives headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: the
  # browser reads commands on fd 3 and writes on fd 4, each a JSON text ended by NUL).
  # argv: chromium, url, button value to click, screenshot before, screenshot after
  import base64, json, os, subprocess, sys, tempfile, time

  chromium, url, button, before_png, after_png = sys.argv[1:6]
  to_browser_r, to_browser_w = os.pipe()
  from_browser_r, from_browser_w = os.pipe()
  profile = tempfile.mkdtemp(prefix="herald-chromium-")

  def setup():
      os.dup2(to_browser_r, 3)
      os.dup2(from_browser_w, 4)

  browser = subprocess.Popen(
      [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
       "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=390,844", "about:blank"],
      pass_fds=(3, 4), preexec_fn=setup, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  os.close(to_browser_r); os.close(from_browser_w)
  out = os.fdopen(to_browser_w, "wb", buffering=0)
  inp = os.fdopen(from_browser_r, "rb", buffering=0)
  buffer = b""
  next_id = 0
  events = []

  def receive():
      global buffer
      while b"\0" not in buffer:
          chunk = inp.read(65536)
          if not chunk:
              raise SystemExit("chromium closed the pipe")
          buffer += chunk
      message, _, buffer = buffer.partition(b"\0")
      return json.loads(message)

  def call(method, params=None, session=None):
      global next_id
      next_id += 1
      message = {"id": next_id, "method": method, "params": params or {}}
      if session:
          message["sessionId"] = session
      out.write(json.dumps(message).encode() + b"\0")
      while True:
          reply = receive()
          if reply.get("id") == next_id:
              if "error" in reply:
                  raise SystemExit(f"{method}: {reply['error']}")
              return reply.get("result", {})
          events.append(reply)

  def wait_event(name, session, deadline=60):
      end = time.time() + deadline
      while time.time() < end:
          for index, event in enumerate(events):
              if event.get("method") == name and event.get("sessionId") == session:
                  del events[index]
                  return event
          events.append(receive())
      raise SystemExit(f"no {name} within {deadline} s")

  try:
      target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
      session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
      call("Page.enable", session=session)
      call("Page.navigate", {"url": url}, session=session)
      wait_event("Page.loadEventFired", session)
      def evaluate(expression):
          return call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"].get("value")
      first = {"title": evaluate("document.title"), "text": evaluate("document.body.innerText"),
               "buttons": evaluate("[...document.querySelectorAll('button')].map(b => b.value)"),
               "scripts": evaluate("document.scripts.length"),
               "width": evaluate("document.documentElement.scrollWidth"), "viewport": evaluate("window.innerWidth")}
      shot = call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
      open(before_png, "wb").write(base64.b64decode(shot))
      evaluate(f"document.querySelector('button[value={json.dumps(button)}]').click()")
      wait_event("Page.loadEventFired", session)
      second = {"title": evaluate("document.title"), "text": evaluate("document.body.innerText")}
      shot = call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
      open(after_png, "wb").write(base64.b64decode(shot))
      print(json.dumps({"before": first, "after": second}))
  finally:
      try:
          call("Browser.close")
      except BaseException:
          pass
      browser.wait(timeout=30)
  """#
