"""Customer tax IDs: `/v1/customers/{customer}/tax_ids` (create, retrieve, list, delete), with
`customer.tax_id.created` / `.deleted` events.

As on Stripe: the `type` is one of Stripe's tax ID types; `eu_vat`, `gb_vat` and `us_ein` values are
checked for their format (`tax_id_invalid`); `country` comes from the value's prefix (eu_vat) or
the type. Simplified: no verification service runs, so `verification.status` stays `pending` for
the types Stripe verifies (eu_vat, gb_vat, au_abn) and is `unavailable` for the others.
"""

from __future__ import annotations

import re

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import enum, string
from billfold_sandbox.resources.nested import require_nested
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

TAX_ID = "tax_id"
TYPES = tuple(
    """
    ad_nrt ae_trn al_tin am_tin ao_tin ar_cuit au_abn au_acn au_arn au_wpn aw_tin az_tin
    ba_tin bb_tin bd_bin bf_ifu bg_uic bh_vat bj_ifu bo_tin br_cnpj br_cpf bs_tin bw_vat
    by_tin ca_bn ca_gst_hst ca_pst_bc ca_pst_mb ca_pst_sk ca_qst cd_nif ch_uid ch_vat ci_vat
    cl_tin cm_niu cn_tin co_nit cr_tin cv_nif cz_dic de_stn do_rcn ec_ruc eg_tin es_cif
    et_tin eu_oss_vat eu_vat fo_vat fr_siren fr_siret fr_spi gb_vat ge_vat gh_tin gi_tin
    gn_nif hk_br hr_oib hu_tin ic_nif id_npwp il_vat in_gst is_kt is_vat it_cf jp_cn jp_rn
    jp_trn ke_pin kg_tin kh_tin kr_brn kz_bin la_tin li_uid li_vat lk_vat ma_vat md_cf
    md_vat me_pib mk_vat mr_nif mu_vat mx_rfc my_frp my_itn my_sst mz_nuit ng_tin no_vat
    no_voec np_pan nz_bn nz_gst om_vat pe_ruc ph_tin pl_nip pt_nif py_ruc ro_tin rs_pib
    ru_inn ru_kpp sa_vat sg_gst sg_uen si_tin sm_coe sn_ninea sr_fin sv_nit th_vat tj_tin
    tr_tin tt_bir tt_vat tw_vat tz_vat ua_vat ug_tin us_ein uy_ruc uz_tin uz_vat ve_rif
    vn_tin za_vat zm_tin zw_tin
    """.split()
)
VERIFIED_TYPES = ("eu_vat", "gb_vat", "au_abn")
EU_PREFIXES = (
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()
)
FORMATS = {
    "eu_vat": re.compile("^(" + "|".join(EU_PREFIXES) + r")[0-9A-Z]{8,12}$"),
    "gb_vat": re.compile(r"^GB([0-9]{9}|[0-9]{12})$"),
    "us_ein": re.compile(r"^[0-9]{2}-?[0-9]{7}$"),
}

CREATE = {"type": enum(*TYPES, required=True), "value": string(required=True, max_length=100)}
LIST = {"owner": string()}


def _country(kind: str, value: str) -> str:
    if kind == "eu_vat":
        prefix = value[:2]
        return {"EL": "GR", "XI": "GB"}.get(prefix, prefix)
    return "EU" if kind == "eu_oss_vat" else kind[:2].upper()


@router.post("/v1/customers/{customer}/tax_ids", CREATE)
def create_tax_id(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["customer"], param="customer")
    kind = call.params["type"]
    value = call.params["value"].strip()
    if kind in FORMATS:
        value = value.replace(" ", "").upper()
        if not FORMATS[kind].match(value):
            raise invalid_request(
                f"Invalid value for {kind}.", param="value", code="tax_id_invalid"
            )
    if not value:
        raise invalid_request(f"Invalid value for {kind}.", param="value", code="tax_id_invalid")
    tax_id: StripeObject = {
        "id": call.state.new_id("txi"),
        "object": TAX_ID,
        "country": _country(kind, value),
        "created": call.state.now_for(customer["id"]),
        "customer": customer["id"],
        "customer_account": None,
        "livemode": False,
        "owner": {"customer": customer["id"], "customer_account": None, "type": "customer"},
        "type": kind,
        "value": value,
        "verification": {
            "status": "pending" if kind in VERIFIED_TYPES else "unavailable",
            "verified_address": None,
            "verified_name": None,
        },
    }
    call.state.insert(tax_id)
    call.emit("customer.tax_id.created", tax_id)
    return tax_id


def _tax_id(call: Call) -> StripeObject:
    return require_nested(call, ("customer", "customer"), (TAX_ID, "id"), "customer")


@router.get("/v1/customers/{customer}/tax_ids/{id}")
def retrieve_tax_id(call: Call) -> StripeObject:
    return _tax_id(call)


@router.delete("/v1/customers/{customer}/tax_ids/{id}")
def delete_tax_id(call: Call) -> StripeObject:
    found = _tax_id(call)
    call.emit("customer.tax_id.deleted", found)
    return call.state.mark_deleted(found)


@router.get("/v1/customers/{customer}/tax_ids", list=True)
def list_tax_ids(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["customer"], param="customer")
    found = [
        t for t in call.state.all(TAX_ID, newest_first=True) if t["customer"] == customer["id"]
    ]
    return call.list_response(found)
