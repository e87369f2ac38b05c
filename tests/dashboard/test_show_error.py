"""A service's error lands on the form field it names: services speak the domain's names,
which are the dashboard forms' field names."""

from apikeys.forms import ApiKeyForm, IamRuleForm
from core.dashboard import show_error
from core.errors import ServiceError, ValidationFailed


def test_a_field_error_goes_on_the_field_of_the_same_name():
    form = ApiKeyForm({"description": "x", "usage_limit": "5"})
    form.is_valid()

    show_error(form, ValidationFailed.field("usage_limit", "must be zero or more USD"))

    assert form.errors == {"usage_limit": ["must be zero or more USD"]}


def test_an_error_inside_a_rule_value_goes_on_the_field_that_fills_that_key():
    form = IamRuleForm({"rule_type": "allow_pricing", "max_input_price": "1"})
    form.is_valid()

    show_error(form, ValidationFailed.field("rule_value.maxInputPrice", "must be a number"))
    show_error(form, ValidationFailed.field("rule_value.models", "must list at least one model"))

    assert form.errors["max_input_price"] == ["must be a number"]
    assert form.errors["models"] == ["must list at least one model"]


def test_an_error_of_no_field_goes_above_the_form():
    form = ApiKeyForm({"description": "x"})
    form.is_valid()

    show_error(form, ServiceError("The project is archived."))

    assert form.non_field_errors() == ["The project is archived."]
