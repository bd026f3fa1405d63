"""Endpoints and their models: admin-managed (keys stay in the environment)."""

from django.contrib import admin

from conversions.models import Endpoint, EndpointModel


class EndpointModelInline(admin.TabularInline):
    model = EndpointModel
    extra = 0


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "base_url", "key_env", "api_version", "rpm_limit", "tpm_limit")
    search_fields = ("name", "base_url")
    inlines = [EndpointModelInline]
