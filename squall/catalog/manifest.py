"""The packages of the standard catalog: ``/whisk.system/utils`` and ``/whisk.system/samples``.

Every OpenWhisk installation carries these two public packages (from
``apache/openwhisk-catalog``), and clients, tutorials and the ``openwhisk`` npm client's
own tests use them (``/whisk.system/utils/echo`` in a sequence or behind a rule, ``sort``
invoked by its full name). Each action here takes the parameters and gives the results
of OpenWhisk's; the Node.js sources are Squall's own, one file per action beside this
module (``utils/<name>.js``, ``samples/<name>.js``), read when the entities are built.

They are ordinary ``nodejs`` actions of the default Node.js kind, run in the sandbox like
any user's, in the namespace of whoever invokes them (a published package is invocable
by every namespace; ``utils/namespace`` therefore answers the caller's namespace).

Differences from OpenWhisk's catalog, and why:

- ``samples/cat`` and ``samples/head`` are Swift actions there; here they are Node.js
  actions with the same parameters and results, since Squall has no Swift runtime.
- ``samples/curl`` runs ``curl`` without a shell (one URL, never a command line); where
  the sandbox cannot reach the URL, its answer is curl's error text.
- ``samples/invoke`` is a Swift action there (``Whisk.invoke``); here it is a Node.js
  action that makes the same blocking invocation of ``utils/date`` with the ``openwhisk``
  npm package and returns the same answer (date's activation record).

``samples/countdown``, ``helloPromises`` and ``invoke`` call the platform from inside the
action, as the invoking namespace, with the ``openwhisk`` npm package every Node.js kind
ships: they alone are annotated ``provide-api-key: true`` (as in OpenWhisk's manifest), so
they alone are given the namespace's action key (``__OW_API_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from squall.entities import params
from squall.entities.action import Action
from squall.entities.kinds import CodeExec
from squall.entities.manifest import resolve_kind
from squall.entities.names import EntityPath
from squall.entities.package import Package

SYSTEM_NAMESPACE = "whisk.system"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One entry of the ``parameters`` annotation (what ``wsk action get --summary``
    shows); ``type`` and ``required`` are left out when None, as in OpenWhisk's."""

    name: str
    description: str | None = None
    required: bool | None = None
    type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.required is not None:
            out["required"] = self.required
        if self.type is not None:
            out["type"] = self.type
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class SystemAction:
    """A catalog action: its name (also its source file's, ``<name>.js``) and the
    annotations that document it."""

    name: str
    description: str
    parameters: tuple[Parameter, ...] = ()
    sample_input: dict[str, Any] | None = None
    sample_output: Any = None
    #: Only an action that calls the platform gets the invoking namespace's action key
    #: (as OpenWhisk installs its catalog: new actions get ``provide-api-key: false``).
    provide_api_key: bool = False

    def annotations(self, kind: str) -> params.KeyValues:
        out: params.KeyValues = [{"key": "description", "value": self.description}]
        if self.parameters:
            out.append({"key": "parameters", "value": [p.to_json() for p in self.parameters]})
        if self.sample_input is not None:
            out.append({"key": "sampleInput", "value": self.sample_input})
        if self.sample_output is not None:
            out.append({"key": "sampleOutput", "value": self.sample_output})
        out.append({"key": "provide-api-key", "value": self.provide_api_key})
        out.append({"key": "exec", "value": kind})
        return out


@dataclass(frozen=True, slots=True)
class SystemPackage:
    """A published package of ``whisk.system`` and its actions."""

    name: str
    description: str
    actions: tuple[SystemAction, ...] = field(default_factory=tuple)

    def package(self) -> Package:
        return Package(
            path=EntityPath(SYSTEM_NAMESPACE, "", self.name),
            publish=True,
            annotations=[{"key": "description", "value": self.description}],
        )

    def source(self, action: SystemAction) -> str:
        """The Node.js source of ``action``, shipped with Squall."""
        return (resources.files(__package__) / self.name / f"{action.name}.js").read_text("utf-8")

    def action_entities(self) -> list[Action]:
        """Its actions as they are stored (the code read from the files)."""
        kind = resolve_kind("nodejs:default")
        return [
            Action(
                path=EntityPath(SYSTEM_NAMESPACE, self.name, action.name),
                exec=CodeExec(kind=kind, code=self.source(action), binary=False),
                annotations=action.annotations(kind),
            )
            for action in self.actions
        ]


_LINES = Parameter("lines", "An array of strings or numbers", required=True, type="array")

UTILS = SystemPackage(
    "utils",
    "Building blocks that format and assemble data",
    (
        SystemAction(
            "echo",
            "Returns its input",
            (Parameter("payload", "Any JSON value", required=False),),
            {"payload": "Five fuzzy felines"},
            {"payload": "Five fuzzy felines"},
        ),
        SystemAction(
            "cat",
            "Joins an array into a string, one element per line",
            (_LINES,),
            {"lines": [4, 2, 3]},
            {"lines": [4, 2, 3], "payload": "4\n2\n3"},
        ),
        SystemAction(
            "smash",
            "Nests all other parameters under the property named by $fieldName",
            (Parameter("$fieldName", "The property to nest under", required=True, type="string"),),
            {"a": 1, "b": {"c": 2, "d": 3}, "$fieldName": "p"},
            {"p": {"a": 1, "b": {"c": 2, "d": 3}}},
        ),
        SystemAction(
            "split",
            "Splits a string into an array",
            (
                Parameter("payload", "A string", required=True),
                Parameter(
                    "separator", "Where to split (default: at each line end)", required=False
                ),
            ),
            {"payload": "one,two,three", "separator": ","},
            {"lines": ["one", "two", "three"], "payload": "one,two,three"},
        ),
        SystemAction(
            "sort",
            "Sorts an array",
            (_LINES,),
            {"lines": [4, 2, 3]},
            {"lines": [2, 3, 4], "length": 3},
        ),
        SystemAction(
            "head",
            "The first elements of an array",
            (
                _LINES,
                Parameter("num", "How many (default 1)", required=False, type="integer"),
            ),
            {"lines": [4, 2, 3], "num": 2},
            {"lines": [4, 2], "num": 2},
        ),
        SystemAction(
            "date", "The current date and time", (), None, {"date": "2026-01-01T00:00:00.000Z"}
        ),
        SystemAction(
            "namespace",
            "The namespace of the caller's key",
            (),
            None,
            {"namespace": "guest"},
        ),
        SystemAction(
            "hosturl",
            "The URL that activates an action or a trigger",
            (
                Parameter("web", "True for the URL of a web action", type="boolean"),
                Parameter(
                    "ext",
                    "A web action's extension: .html, .http, .json, .svg or .text",
                    type="string",
                ),
                Parameter(
                    "trigger", "True for a trigger's URL instead of an action's", type="boolean"
                ),
                Parameter("path", "The action as <name> or <package>/<name>", type="string"),
            ),
            {"web": True, "path": "utils/echo"},
            {"url": "https://localhost/api/v1/web/guest/utils/echo"},
        ),
    ),
)

_PAYLOAD_STRING = Parameter("payload", "A string", required=True)

SAMPLES = SystemPackage(
    "samples",
    "Simple actions to get started with",
    (
        SystemAction(
            "cat",
            "Like the Unix cat command: an array's elements as lines of text",
            (Parameter("lines", "An array of strings", required=True),),
            {"lines": [1, 2, 3]},
            {"lines": [1, 2, 3], "payload": "1\n2\n3\n"},
        ),
        SystemAction(
            "countdown",
            "Counts down from n, invoking itself through the API for each step",
            (Parameter("n", "How many more times it invokes itself", required=False),),
            {"n": 5},
            {"activationId": "10f95a603b6c4966b95a603b6cd96643"},
            provide_api_key=True,
        ),
        SystemAction(
            "curl",
            "Fetches a URL with curl",
            (Parameter("payload", "A host or URL", required=True),),
            {"payload": "example.com"},
            {"msg": "the page, or curl's error"},
        ),
        SystemAction(
            "greeting",
            "A friendly greeting",
            (
                Parameter("name", required=False),
                Parameter("place", "Where the greeting comes from", required=False),
            ),
            {"payload": "Cat", "place": "Narrowsburg"},
            {"payload": "Hello, Cat from Narrowsburg!"},
        ),
        SystemAction(
            "head",
            "The first num elements of an array",
            (
                Parameter("lines", "An array of strings", required=True),
                Parameter("num", "How many (default 1)", required=False),
            ),
            {"lines": [1, 2, 3, 4], "num": 2},
            {"lines": [1, 2], "num": 2},
        ),
        SystemAction(
            "helloWorld",
            "Shows how an action logs",
            (Parameter("payload", "Who to greet in the log", required=False),),
            {"payload": "Cat"},
            {},
        ),
        SystemAction(
            "helloPromises",
            "A greeting as an array of words, from an action that returns a promise: "
            "it invokes greeting through the API",
            (
                Parameter("name", required=False),
                Parameter("place", "Where the greeting comes from", required=False),
            ),
            {"name": "Cat", "place": "Narrowsburg"},
            {"lines": ["Hello,", "Cat", "from", "Narrowsburg!"]},
            provide_api_key=True,
        ),
        SystemAction(
            "invoke",
            "Invokes utils/date through the API, logs the date, and returns date's activation",
            (),
            {},
            {
                "name": "date",
                "namespace": "guest",
                "response": {
                    "result": {"date": "2026-01-01T00:00:00.000Z"},
                    "status": "success",
                    "success": True,
                },
            },
            provide_api_key=True,
        ),
        SystemAction(
            "printParams",
            "Logs the parameters sorted by name, and returns them",
            (),
            {"x": 1, "b": 5, "z": 2},
            {"params": {"b": 5, "x": 1, "z": 2}},
        ),
        SystemAction(
            "wordCount",
            "Counts the words of a string",
            (_PAYLOAD_STRING,),
            {"payload": "Five fuzzy felines"},
            {"count": 3},
        ),
        SystemAction(
            "wordCountAsync",
            "Counts the words of a string, as an asynchronous action",
            (_PAYLOAD_STRING,),
            {"payload": "Five fuzzy felines"},
            {"count": 3},
        ),
    ),
)

PACKAGES: tuple[SystemPackage, ...] = (UTILS, SAMPLES)
