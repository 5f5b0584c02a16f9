"""The payment methods page in process, on billfold's real Stripe adapter and the sandbox, on
both databases: a card saved as Stripe.js would (its PaymentMethod's id to the setup route), a
bank account confirmed with the setup intent's client secret and verified by microdeposits
(a wrong answer shown with the attempts left), reorder, default, removal refused (409) and
done, autopay, paying the balance; tenancy (another customer's method is never shown or
changed; CSRF: tests/web/test_sign_in.py); Stripe.js's origin in the CSP, never a secret key."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.customers.models import AccountKind
from billfold.customers.service import find_account
from billfold.db.engine import Database
from billfold.payments import dues
from billfold.payments.models import Payment, PaymentMethod
from billfold.web.payments import publishable_key
from billfold.web.rendering import content_security_policy, stripe_js
from tests.sandbox_stripe import SandboxStripe
from tests.web.conftest import csrf_of, sign_in

PAGE = "/payment-methods"


async def _post(api: httpx.AsyncClient, path: str, **data: str) -> httpx.Response:
    token = csrf_of((await api.get(PAGE)).text)
    return await api.post(path, data={**data, "csrf_token": token})


async def _card(api: httpx.AsyncClient, pm: str = "pm_card_visa") -> str:
    saved = await _post(api, f"{PAGE}/setup/card", payment_method_id=pm)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["status"] == "succeeded", body
    return str(body["payment_method_id"])


def _order(html: str) -> list[str]:
    return re.findall(r'<li id="method-(pm_[^"]+)"', html)


async def _account_id(database: Database, external_id: str) -> str:
    async with database.read() as session:
        found = await find_account(session, AccountKind.USER, external_id)
    assert found is not None
    return found.id


@dataclass
class Customer:
    """The panel's browser on the sandbox (the `api` client), and how it signs in."""

    api: httpx.AsyncClient
    settings: Settings
    clock: FrozenClock

    async def sign_in(self, external_id: str) -> httpx.AsyncClient:
        self.api.cookies.clear()
        await sign_in(self.api, self.settings, self.clock, f"user:{external_id}")
        return self.api


@pytest.fixture
def customer(api: httpx.AsyncClient, billing_settings: Settings, clock: FrozenClock) -> Customer:
    return Customer(api, billing_settings, clock)


async def test_cards_listed_reordered_made_default_and_removed(
    customer: Customer, stripe_world: SandboxStripe, database: Database
) -> None:
    api = await customer.sign_in("erin")
    page = await api.get(PAGE)
    assert page.status_code == 200 and "No payment methods yet." in page.text
    assert 'aria-current="page">Payment methods' in page.text

    visa = await _card(api)
    master = await _card(api, "pm_card_mastercard")
    page = (await api.get(PAGE)).text
    assert _order(page) == [visa, master]
    assert "Visa ending in 4242" in page and "Mastercard ending in 4444" in page
    assert page.count('class="badge">Default') == 1
    assert re.search(r"Visa ending in 4242</strong> <span class=\"badge\">Default", page)
    assert re.search(r"Expires \d\d/20\d\d", page)
    # Keyboard-usable buttons to move each method, named after it.
    assert 'aria-label="Move Mastercard ending in 4444 up"' in page
    assert 'aria-label="Move Visa ending in 4242 up"' not in page  # first: nothing above

    moved = await _post(api, f"{PAGE}/move", payment_method_id=master, direction="up")
    assert moved.status_code == 303 and "done=reordered" in moved.headers["location"]
    page = (await api.get(PAGE)).text
    assert _order(page) == [master, visa]
    assert (
        "The order of your payment methods is changed."
        in (await api.get(moved.headers["location"])).text
    )
    # The first usable method is the default.
    assert re.search(r"Mastercard ending in 4444</strong> <span class=\"badge\">Default", page)

    made = await _post(api, f"{PAGE}/default", payment_method_id=visa)
    assert made.status_code == 303
    assert _order((await api.get(PAGE)).text) == [visa, master]

    # Removing the last usable method while autopay is on and money is owed: refused, said.
    assert (await _post(api, f"{PAGE}/remove", payment_method_id=master)).status_code == 303
    assert (await _post(api, f"{PAGE}/autopay", enabled="on")).status_code == 303
    erin = await _account_id(database, "erin")
    async with database.transaction() as session:
        await dues.add_charge(
            session,
            erin,
            amount=1250,
            currency="usd",
            charge_id="due_erin_1",
            description="API usage",
            clock=customer.clock,
        )
    refused = await _post(api, f"{PAGE}/remove", payment_method_id=visa)
    assert refused.status_code == 409
    assert "last usable payment method while autopay is on" in refused.text
    assert 'role="alert"' in refused.text and _order(refused.text) == [visa]

    page = (await api.get(PAGE)).text
    assert "Autopay is <strong>on</strong>" in page and "$12.50" in page
    paid = await _post(api, f"{PAGE}/pay-balance", currency="usd")
    assert paid.status_code == 303 and paid.headers["location"].endswith("done=paid")
    page = (await api.get(paid.headers["location"])).text
    assert "your balance is paid" in page and "Pay $12.50 now" not in page
    again = await _post(api, f"{PAGE}/pay-balance", currency="usd")
    assert again.status_code == 409 and "nothing is owed" in again.text

    assert (await _post(api, f"{PAGE}/autopay", enabled="off")).status_code == 303
    assert "Autopay is <strong>off</strong>" in (await api.get(PAGE)).text
    removed = await _post(api, f"{PAGE}/remove", payment_method_id=visa)
    assert removed.status_code == 303 and removed.headers["location"].endswith("done=removed")
    assert _order((await api.get(PAGE)).text) == []


async def test_a_bank_account_collected_by_stripe_js_and_verified(
    customer: Customer, stripe_world: SandboxStripe, database: Database
) -> None:
    api = await customer.sign_in("frank")
    started = await _post(api, f"{PAGE}/setup/us-bank")
    assert started.status_code == 200, started.text
    intent = started.json()
    assert intent["client_secret"] and intent["status"] == "requires_payment_method"
    # What Stripe.js does in the browser with the client secret: the bank account, confirmed.
    stripe_world.client.v1.setup_intents.confirm(
        intent["setup_intent_id"],
        params={
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                    "account_holder_type": "individual",
                },
                "billing_details": {"name": "Frank"},
            },
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        },
    )
    finished = await _post(api, f"{PAGE}/setup/finish", setup_intent_id=intent["setup_intent_id"])
    assert finished.status_code == 200, finished.text
    assert finished.json()["next_action"] == "verify_with_microdeposits"
    pm = str(finished.json()["payment_method_id"])
    page = (await api.get(PAGE)).text
    assert "ending in 6789" in page and "Waiting for verification" in page
    assert "First deposit" in page and "Make default" not in page

    wrong = await _post(api, f"{PAGE}/verify", payment_method_id=pm, amount_1="12", amount_2="34")
    assert wrong.status_code == 400 and "2 attempts left" in wrong.text, re.findall(
        r'role="alert">([^<]*)', wrong.text
    )
    assert 'aria-invalid="true"' in wrong.text
    half = await _post(api, f"{PAGE}/verify", payment_method_id=pm, amount_1="32")
    assert half.status_code == 400 and "enter both amounts" in half.text
    right = await _post(api, f"{PAGE}/verify", payment_method_id=pm, amount_1="32", amount_2="45")
    assert right.status_code == 303 and "done=verified" in right.headers["location"]
    page = (await api.get(PAGE)).text
    assert "Waiting for verification" not in page and "Active" in page
    # Finishing again (a retried request) changes nothing.
    again = await _post(api, f"{PAGE}/setup/finish", setup_intent_id=intent["setup_intent_id"])
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    assert _order((await api.get(PAGE)).text) == [pm]


async def test_another_customers_method_is_never_shown_or_changed(
    customer: Customer, stripe_world: SandboxStripe, database: Database
) -> None:
    api = await customer.sign_in("gina")
    ginas = await _card(api)
    gina_setup = (await _post(api, f"{PAGE}/setup/us-bank")).json()["setup_intent_id"]
    api = await customer.sign_in("hal")
    page = (await api.get(PAGE)).text
    assert ginas not in page and "No payment methods yet." in page
    for path, data in (
        ("/default", {"payment_method_id": ginas}),
        ("/move", {"payment_method_id": ginas, "direction": "up"}),
        ("/remove", {"payment_method_id": ginas}),
        ("/verify", {"payment_method_id": ginas, "amount_1": "32", "amount_2": "45"}),
    ):
        refused = await _post(api, PAGE + path, **data)
        assert refused.status_code == 404, (path, refused.text)
        assert f"no payment method {ginas}" in refused.text
    finished = await _post(api, f"{PAGE}/setup/finish", setup_intent_id=gina_setup)
    assert finished.status_code == 404 and finished.json()["error"]["field"] == "setup_intent_id"
    async with database.read() as session:
        method = await session.get(PaymentMethod, ginas)
    assert method is not None and method.account_id == await _account_id(database, "gina")
    assert method.priority == 1


async def test_bad_input_is_a_clear_400(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await sign_in(panel, settings, clock, "user:jon")
    token = csrf_of((await panel.get(PAGE)).text)
    for path, data, field in (
        ("/move", {"payment_method_id": "pm_x", "direction": "sideways"}, "direction"),
        ("/verify", {"payment_method_id": "pm_x", "amount_1": "100"}, "amount_1"),
        ("/autopay", {"enabled": "maybe"}, "enabled"),
        ("/setup/finish", {"setup_intent_id": "pi_123"}, "setup_intent_id"),
    ):
        refused = await panel.post(PAGE + path, data={**data, "csrf_token": token})
        assert refused.status_code == 400, (path, refused.text)
        assert field in refused.text


async def test_stripe_js_and_the_csp(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    """The sandbox's stand-in (mounted: same origin) in sandbox mode; only a publishable key."""
    await sign_in(panel, settings, clock, "user:kim")
    page = await panel.get(PAGE)
    assert '<script src="/stripe-sandbox/js/v3"></script>' in page.text
    assert 'data-stripe-key="pk_test_' in page.text and "sk_" not in page.text
    assert "script-src 'self';" in page.headers["content-security-policy"]
    stand_in = await panel.get("/stripe-sandbox/js/v3")
    assert stand_in.status_code == 200 and "window.Stripe = Stripe" in stand_in.text


def test_the_real_stripe_js_with_a_real_key() -> None:
    real = Settings(
        stripe_secret_key="sk_live_abc",  # a secret: never on a page
        stripe_publishable_key="pk_live_abc",
        jwt_secret="x" * 40,
    )
    assert stripe_js(real).url == "https://js.stripe.com/v3"
    csp = content_security_policy(real)
    assert "script-src 'self' https://js.stripe.com;" in csp
    assert "frame-src 'self' https://js.stripe.com https://hooks.stripe.com;" in csp
    assert "connect-src 'self' https://api.stripe.com;" in csp
    assert publishable_key(real) == "pk_live_abc"
    # No publishable key set: nothing is handed to Stripe.js (never the secret one).
    assert publishable_key(real.model_copy(update={"stripe_publishable_key": None})) is None
    wrong = real.model_copy(update={"stripe_publishable_key": "sk_live_oops"})
    assert publishable_key(wrong) is None
    # A sandbox served on its own: its stand-in, its origin.
    apart = real.model_copy(
        update={
            "stripe_secret_key": "sk_test_x",
            "stripe_api_base_override": "http://127.0.0.1:12111/",
            "stripe_publishable_key": "pk_test_x",
        }
    )
    assert stripe_js(apart).url == "http://127.0.0.1:12111/js/v3"
    assert "script-src 'self' http://127.0.0.1:12111;" in content_security_policy(apart)


async def test_the_activity_pages_payments_and_dues_with_csv(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    """Payments and the dues ledger on the activity page, each paged by its own cursor (no
    count, no offset) and whole in its CSV; another customer's never appear."""
    await sign_in(panel, settings, clock, "user:lea")
    lea = await _account_id(database, "lea")
    now = clock.now()
    async with database.transaction() as session:
        for n in range(30):
            await dues.add_charge(
                session, lea, amount=100 + n, currency="usd", charge_id=f"due_lea_{n}",
                description=f"usage #{n}", clock=clock,
            )  # fmt: skip
        for n in range(27):
            session.add(
                Payment(
                    id=f"pay_lea{n:02d}", account_id=lea, kind="one_off", amount=500 + n,
                    currency="usd", description=f"=HYPERLINK(#{n})", status="succeeded",
                    refunded_amount=0, attempts=1, created_at=now, updated_at=now,
                )
            )  # fmt: skip
    page = await panel.get("/activity")
    text = page.text
    dues_section = text.split('id="dues-h"')[1]
    assert "usage #29" in dues_section and "usage #4<" not in dues_section
    assert "$1.29" in text and "One-off charge: =HYPERLINK(#26)" in text
    assert "=HYPERLINK(#1)" not in text and text.count("Succeeded") == 25
    older = re.search(r'href="/activity\?payments_before=(pay_\w+)"', text)
    assert older and older.group(1) == "pay_lea02"
    second = (await panel.get(f"/activity?payments_before={older.group(1)}")).text
    assert "=HYPERLINK(#1)" in second and "=HYPERLINK(#0)" in second
    assert "=HYPERLINK(#2)<" not in second and "Older payments" not in second
    dues_older = re.search(r'href="/activity\?dues_before=(\d+)"', text)
    assert dues_older
    partial = await panel.get(
        f"/activity?dues_before={dues_older.group(1)}", headers={"HX-Request": "true"}
    )
    dues_section = partial.text.split('id="dues-h"')[1]
    assert "<html" not in partial.text and "usage #4" in dues_section
    assert "usage #5<" not in dues_section and 'id="payments-h"' in partial.text
    assert (await panel.get("/activity?payments_before=nope")).status_code == 400
    assert (await panel.get("/activity?payments_before=pay_other")).status_code == 404

    payments_csv = (await panel.get("/activity/payments.csv")).text.splitlines()
    assert payments_csv[0].startswith("payment_id,created_at,kind")
    assert len(payments_csv) == 28 and "'=HYPERLINK(#0)" in payments_csv[-1]
    dues_csv = (await panel.get("/activity/dues.csv")).text.splitlines()
    assert len(dues_csv) == 31 and dues_csv[-1].split(",")[2:6] == [
        "dues", "dues_charge", "usage #0", "100",
    ]  # fmt: skip

    panel.cookies.clear()
    await sign_in(panel, settings, clock, "user:max")
    theirs = (await panel.get("/activity")).text
    assert "No payments yet." in theirs and "Nothing owed or paid yet." in theirs
    assert len((await panel.get("/activity/payments.csv")).text.splitlines()) == 1
    assert len((await panel.get("/activity/dues.csv")).text.splitlines()) == 1
    assert (await panel.get("/activity?payments_before=pay_lea05")).status_code == 404


async def test_a_declined_balance_payment_is_said_and_the_dues_stay(
    customer: Customer, stripe_world: SandboxStripe, database: Database
) -> None:
    api = await customer.sign_in("olga")
    nothing = await _post(api, f"{PAGE}/pay-balance", currency="usd")
    assert nothing.status_code == 402 and "add a usable payment method first" in nothing.text
    await _card(api, "pm_card_chargeCustomerFail")
    olga = await _account_id(database, "olga")
    async with database.transaction() as session:
        await dues.add_charge(
            session, olga, amount=990, currency="usd", charge_id="due_olga_1",
            description="API usage", clock=customer.clock,
        )  # fmt: skip
    declined = await _post(api, f"{PAGE}/pay-balance", currency="usd")
    assert declined.status_code == 200
    alert = re.findall(r'role="alert">([^<]*)', declined.text)
    assert alert and alert[0].startswith("The payment failed:"), alert
    assert "Pay $9.90 now" in (await api.get(PAGE)).text  # still owed, payable again
    assert "Failed" in (await api.get("/activity")).text


def test_the_tasks_that_call_stripe_count_against_the_checkout_budget(panel_app: object) -> None:
    from billfold.api.ratelimit import RateLimitClass, rate_limit_class

    routes = panel_app.router.routes  # type: ignore[attr-defined]
    for method, path, expected in (
        ("POST", f"{PAGE}/setup/card", RateLimitClass.CHECKOUT),
        ("POST", f"{PAGE}/setup/us-bank", RateLimitClass.CHECKOUT),
        ("POST", f"{PAGE}/setup/finish", RateLimitClass.CHECKOUT),
        ("POST", f"{PAGE}/verify", RateLimitClass.CHECKOUT),
        ("POST", f"{PAGE}/pay-balance", RateLimitClass.CHECKOUT),
        ("POST", f"{PAGE}/default", RateLimitClass.API),
        ("POST", f"{PAGE}/autopay", RateLimitClass.API),
        ("GET", PAGE, RateLimitClass.API),
    ):
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        assert rate_limit_class(routes, scope) == expected, path
