"""Push and WhatsApp campaigns through a running stack (scripts/run-stack), as a user drives them
over REST: providers whose keys come from the HERALD_PROVIDER_SANDBOX_* variables run-stack gives
delivery, subscribers with devices and WhatsApp numbers, a campaign on each channel, and what the
provider sandbox received: each recipient exactly once, a token the service refused retired and
not used again, a WhatsApp template without its parameter refused at save naming it, free text
outside the 24-hour window refused at send with the reason.

    python3 scripts/e2e_push_whatsapp.py GATEWAY_URL SANDBOX_URL SANDBOX_CA_FILE ADMIN_KEY
"""

import json
import ssl
import sys
import time
import urllib.error
import urllib.request

gateway, sandbox, ca_file, key = sys.argv[1:5]
sandbox_tls = ssl.create_default_context(cafile=ca_file)
ca_pem = open(ca_file).read()


def call(method, path, body=None, expect=(200, 201, 202)):
    request = urllib.request.Request(
        gateway + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if status not in expect:
        raise SystemExit(f"push/whatsapp: {method} {path} gave HTTP {status}: {text}")
    return json.loads(text) if text else {}


def sandbox_call(method, path, body=None):
    request = urllib.request.Request(
        sandbox + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30, context=sandbox_tls) as response:
        return json.loads(response.read().decode())


def eventually(what, condition, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"push/whatsapp: timed out waiting for {what}")


def say(text):
    print(f"e2e: {text}", flush=True)


# Providers: their keys are named by variable, never given.
call("POST", "/v1/providers", {"name": "apns", "channel": "CHANNEL_PUSH", "apns": {
    "url": sandbox, "team_id": "HERALDTEAM", "key_id": "HERALDKEY1", "topic": "dev.herald.demo",
    "private_key_variable": "HERALD_PROVIDER_SANDBOX_APNS_KEY", "trusted_ca_pem": ca_pem}})
call("POST", "/v1/providers", {"name": "fcm", "channel": "CHANNEL_PUSH", "fcm": {
    "url": sandbox, "project_id": "herald-demo", "service_account_variable": "HERALD_PROVIDER_SANDBOX_FCM_ACCOUNT",
    "trusted_ca_pem": ca_pem}})
call("POST", "/v1/providers", {"name": "whatsapp", "channel": "CHANNEL_WHATSAPP", "cost_cents": "1", "whatsapp": {
    "url": sandbox + "/v21.0", "phone_number_id": "1055501000", "phone_number": "+15550100000",
    "access_token_variable": "HERALD_PROVIDER_SANDBOX_WA_TOKEN", "app_secret_variable": "HERALD_PROVIDER_SANDBOX_WA_APP_SECRET",
    "verify_token_variable": "HERALD_PROVIDER_SANDBOX_WA_VERIFY_TOKEN", "trusted_ca_pem": ca_pem}})
refused = call("POST", "/v1/providers", {"name": "leaky", "channel": "CHANNEL_PUSH", "apns": {
    "team_id": "HERALDTEAM", "key_id": "HERALDKEY1", "topic": "dev.herald.demo", "private_key_variable": "HERALD_SECRETS_KEY"}},
    expect=(400,))
assert "private_key_variable" in json.dumps(refused), refused
say("push and WhatsApp providers put, their keys named by HERALD_PROVIDER_* variables (another variable is a 400)")

people = {}
for name, whatsapp in [("ada", "+4915112340001"), ("bob", "+4915112340002"), ("cy", "+4915112340003")]:
    people[name] = call("POST", "/v1/subscribers", {
        "email": f"{name}.push@example.com", "first_name": name.title(), "whatsapp": whatsapp,
        "whatsapp_consent": {"subscribed": True, "source": "checkout-opt-in"}})["id"]
tokens = {"ada": ("apns", "a1" * 32), "bob": ("fcm", "bob-android:APA91bE2E"), "cy": ("apns", "c3" * 32)}
for name, (platform, token) in tokens.items():
    call("POST", f"/v1/subscribers/{people[name]}/push-tokens", {"platform": platform, "token": token, "app_id": "dev.herald.demo"})
# Cy's app was uninstalled: APNs answers 410 Unregistered for the token.
sandbox_call("POST", "/sandbox/unregister", {"token": tokens["cy"][1]})
listed = call("POST", "/v1/lists", {"name": "push-and-whatsapp"})["id"]
call("POST", f"/v1/lists/{listed}/members", {"subscriber_ids": list(people.values())})

push = call("POST", "/v1/templates", {
    "name": "e2e push", "channel": "push", "subject": "Hi {{first_name}}", "body": "Your order {{order}} shipped",
    "variables": [{"name": "first_name"}, {"name": "order", "default_value": "42"}],
    "push": {"data_json": "{\"order\": \"{{order}}\"}", "deep_link": "shop://orders/{{order}}"}})["id"]


def campaign(name, channel, template):
    made = call("POST", "/v1/campaigns", {"name": name, "channel": channel, "list_id": listed, "template_id": template})
    return call("POST", f"/v1/campaigns/{made['id']}/send", {})


def received():
    return sandbox_call("GET", "/sandbox/received")


def settled(campaign_id, count):
    def check():
        listed_messages = call("GET", f"/v1/messages?campaign_id={campaign_id}&limit=100").get("messages", [])
        done = [m for m in listed_messages if m["status"] not in ("queued", "sending")]
        return done if len(done) == count else None
    return eventually(f"campaign {campaign_id}'s {count} messages to settle", check)


first = campaign("e2e push 1", "push", push)
messages = settled(first["id"], 3)
got = [r for r in received()["received"] if r["service"] in ("apns", "fcm")]
assert sorted(r["recipient"] for r in got) == sorted([tokens["ada"][1], tokens["bob"][1]]), got
assert sorted(m["status"] for m in messages) == ["bounced", "sent", "sent"], messages
say("a push campaign reached APNs and FCM once per recipient; the uninstalled app's token bounced (410)")

eventually("Cy's token to be retired", lambda: call("GET", f"/v1/subscribers/{people['cy']}")["push_tokens"][0].get(
    "retired_reason") == "unregistered")
second = campaign("e2e push 2", "push", push)
settled(second["id"], 2)
uses = [r for r in received()["received"] if r["recipient"] == tokens["cy"][1]]
assert not uses, uses
assert sum(tokens["cy"][1] in refusal for refusal in received()["refusals"]) == 1, received()["refusals"]
say("the refused token was retired and the next push campaign did not use it")

bad = call("POST", "/v1/templates", {
    "name": "e2e wa short", "channel": "whatsapp", "body": "Hi {{1}}, your order {{2}} shipped.",
    "variables": [{"name": "first_name"}],
    "whatsapp": {"template_name": "order_shipped", "language": "en_US", "parameters": ["{{first_name}}"]}}, expect=(400,))
assert "whatsapp.parameters[1]" in json.dumps(bad), bad
say("a WhatsApp template without its second parameter is refused at save naming whatsapp.parameters[1]")

approved = call("POST", "/v1/templates", {
    "name": "e2e wa", "channel": "whatsapp", "body": "Hi {{1}}, your order {{2}} shipped.",
    "variables": [{"name": "first_name"}, {"name": "order", "default_value": "42"}],
    "whatsapp": {"template_name": "order_shipped", "language": "en_US", "parameters": ["{{first_name}}", "{{order}}"]}})["id"]
wa = campaign("e2e whatsapp", "whatsapp", approved)
settled(wa["id"], 3)
got = [r for r in received()["received"] if r["service"] == "whatsapp"]
assert sorted(r["recipient"] for r in got) == ["4915112340001", "4915112340002", "4915112340003"], got
eventually("the read receipts to count as opens",
           lambda: int(call("GET", f"/v1/campaigns/{wa['id']}/analytics")["totals"].get("opened", "0")) == 3)
say("a WhatsApp campaign reached the Cloud API once per recipient; its read receipts count as opens")

text = call("POST", "/v1/templates", {
    "name": "e2e wa text", "channel": "whatsapp", "body": "Hi {{first_name}}, anything else?", "variables": [{"name": "first_name"}]})["id"]
free = campaign("e2e whatsapp text", "whatsapp", text)
messages = settled(free["id"], 3)
assert all(m["status"] == "failed" and "24-hour customer-service window" in m["last_error"] for m in messages), messages
say("free WhatsApp text outside the 24-hour window failed at send, saying why")

# The webhook route: the subscription handshake answers the challenge for the verify token only,
# and a body signed with anything but the app secret is 401.
verify_token = open(ca_file.rsplit("/", 1)[0] + "/whatsapp-verify-token").read().strip()
with urllib.request.urlopen(
        f"{gateway}/v1/webhooks/whatsapp/whatsapp?hub.mode=subscribe&hub.verify_token={verify_token}&hub.challenge=1158201444",
        timeout=30) as response:
    assert response.read().decode() == "1158201444"
for url, body, headers, expected in [
    (f"{gateway}/v1/webhooks/whatsapp/whatsapp?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1", None, {}, 403),
    (f"{gateway}/v1/webhooks/whatsapp/whatsapp", b'{"entry": []}',
     {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
]:
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30)
        raise SystemExit(f"push/whatsapp: {url} was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == expected, (url, error.code)
say("the WhatsApp webhook answers its handshake for the verify token only, and refuses a forged signature (401)")
