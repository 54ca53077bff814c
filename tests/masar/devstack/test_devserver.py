"""The dev server fixture is real and knows Masar's search attributes."""

from __future__ import annotations

from temporalio.client import Client

from masar.contract import SEARCH_ATTRIBUTES


async def test_dev_server_has_search_attributes(temporal_dev_server) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    client = await Client.connect(temporal_dev_server.address)
    reply = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(SEARCH_ATTRIBUTES) <= set(reply.custom_attributes)
