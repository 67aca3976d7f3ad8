"""Strategic merge patch, as the real server applies it to built-in kinds.

Merge keys and list strategies come from :mod:`tests.kubeapi.schema` (the Go structs' ``patchMergeKey``
and ``patchStrategy`` tags), found by the field's path, not by its name. Directives:

* ``$patch: replace`` (in a map: the map is replaced by the rest of the patch; as a list item: the list
  is replaced by the other items), ``$patch: delete`` (a map is deleted; a list item with a merge key
  removes the item with that key), ``$patch: merge`` (the default);
* ``$retainKeys: [...]``: after merging, only those keys of the map remain;
* ``$deleteFromPrimitiveList/FIELD: [...]``: those values leave the primitive list FIELD;
* ``$setElementOrder/FIELD: [...]``: the order of FIELD's items (merge-key values, or the values of a
  primitive list); items not named keep their place after the named ones.

``null`` deletes a map key. Lists without a merge strategy are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeapi.schema import ANY, KINDS, ListOf, MapOf, Node


class PatchError(ValueError):
    """A malformed patch (the server answers 400 BadRequest)."""


def strategic_merge(kind: str, target: Any, patch: Any) -> Any:
    return _merge_map(KINDS.get(kind, ANY), target if isinstance(target, dict) else {}, patch)


def _child(node: Node | None, key: str) -> Node | None:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, MapOf):
        return node.value
    return None


def _merge_map(node: Node | None, target: dict[str, Any], patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    directive = patch.pop("$patch", "merge")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive != "merge":
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.pop("$retainKeys", None)
    result = copy.deepcopy(target)
    orders: dict[str, list[Any]] = {}
    for key in [k for k in patch if k.startswith("$")]:
        value = patch.pop(key)
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if not isinstance(value, list):
                raise PatchError(f"{key}: expected a list")
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
        elif key.startswith("$setElementOrder/"):
            if not isinstance(value, list):
                raise PatchError(f"{key}: expected a list")
            orders[key.split("/", 1)[1]] = value
        else:
            raise PatchError(f"unknown directive {key!r}")
    for key, value in patch.items():
        sub = _child(node, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            merged = _merge_list(sub, result.get(key), value)
            result[key] = merged
        elif isinstance(value, dict):
            merged = _merge_map(sub, result.get(key) if isinstance(result.get(key), dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(_child(node, field), result[field], order)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys: expected a list")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(node: Node | None, target: Any, patch: list[Any]) -> list[Any]:
    current = copy.deepcopy(target) if isinstance(target, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if not isinstance(node, ListOf) or node.strategy == "replace":
        return [copy.deepcopy(i) for i in patch]
    if node.strategy == "set":
        return current + [copy.deepcopy(v) for v in patch if v not in current]
    key = node.merge_key
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, e in enumerate(current) if isinstance(e, dict) and e.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del current[idx]
            continue
        if idx is None:
            current.append(_merge_map(node.item, {}, item))
        else:
            current[idx] = _merge_map(node.item, current[idx], item)
    return current


def _reorder(node: Node | None, items: list[Any], order: list[Any]) -> list[Any]:
    key = node.merge_key if isinstance(node, ListOf) else None

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    named = sorted((i for i in items if ident(i) in wanted), key=lambda i: wanted.index(ident(i)))
    return named + [i for i in items if ident(i) not in wanted]
