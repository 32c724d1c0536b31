"""
docs/check_deploy_guide.py: how it reads the guide's az commands and compares
them with az's help, without the Azure CLI (a made-up help text and a made-up az
stand in for it); and what the real guide's commands are.
"""

import importlib.util
import stat
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "check_deploy_guide.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_deploy_guide", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up while it is being executed.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


guide = _load()

SMALL_GUIDE = textwrap.dedent(
    """\
    # A guide

    Prose mentions `az webapp up --sku B1`, which is not a command block.

    ```sh
    az group create --name $RG \\
      --location westeurope   # where it lives
    # az commented --out
    KEY=$(az redis list-keys --resource-group $RG --name $REDIS \\
      --query primaryKey -o tsv)
    URL="rediss://:$(urlencode "$KEY")@$HOST:10000/0"
    echo '# no comment; no az' && az webapp deploy --src-path=/tmp/a.zip --type zip
    az webapp config set --generic-configurations '{"healthCheckPath": "/healthz"}'
    ```

    ```python
    az = "not shell"
    ```

    ```
    az login
    ```
    """
)

HELP = textwrap.dedent(
    """\

    Command
        az webapp deploy : Deploys a provided artifact to Azure Web Apps.
            Use --src-path for a local file.

    Arguments
        --name -n           [Required] : Name of the web app. Its default is set
                                         by `az configure --defaults web=<name>`.
        --src-path                     : Path of the artifact to be deployed.
        --tag               [Deprecated] : A friendly name.
            WARNING: Option '--tag' has been deprecated and will be removed in a future
            release. Use '--track-status' instead.
        --type                         : Used to override the type of artifact being
                                         deployed.  Allowed values: zip, jar.

    Resource Id Arguments
        --resource-group -g            : Name of resource group.

    Global Arguments
        --help -h                      : Show this help message and exit.
        --output -o                    : Output format.

    Examples
        Deploy a zip.
            az webapp deploy --resource-group rg --name app --src-path app.zip --bogus
    """
)


def test_commands_are_read_from_shell_blocks_only() -> None:
    commands = guide.extract_commands(SMALL_GUIDE)
    assert [(c.line, c.path, c.options) for c in commands] == [
        (6, ("group", "create"), ("--name", "--location")),
        (9, ("redis", "list-keys"), ("--resource-group", "--name", "--query", "-o")),
        (12, ("webapp", "deploy"), ("--src-path", "--type")),
        (13, ("webapp", "config", "set"), ("--generic-configurations",)),
        (21, ("login",), ()),
    ]
    assert commands[0].text == "az group create --name $RG --location westeurope"
    assert commands[0].name == "az group create"


def test_comments_and_continuations() -> None:
    assert guide.strip_comment("APP=chat-$X   # https://$APP") == "APP=chat-$X"
    assert guide.strip_comment("echo '#x' \"#y\" a#b") == "echo '#x' \"#y\" a#b"
    lines = guide.logical_lines(10, ["az a \\", "  --b 1 \\", "  --c 2", "", "# x"])
    assert lines == [(10, "az a --b 1 --c 2")]


def test_substitutions_are_commands_of_their_own() -> None:
    line = 'X="$(az account show --query id)" && az group list --output "$(echo tsv)"'
    assert sorted(guide.simple_commands(line)) == sorted(
        [
            "az account show --query id",
            'X="$(...)"',
            "echo tsv",
            'az group list --output "$(...)"',
        ]
    )


def test_help_options_come_from_the_arguments_sections() -> None:
    help_ = guide.parse_help(HELP)
    assert help_.known and not help_.deprecated
    assert help_.options == {
        "--name",
        "-n",
        "--src-path",
        "--tag",
        "--type",
        "--resource-group",
        "-g",
        "--help",
        "-h",
        "--output",
        "-o",
    }
    # Mentions in descriptions and examples are not options of the command.
    assert "--defaults" not in help_.options
    assert "--bogus" not in help_.options
    assert help_.deprecated_options == {"--tag"}


def test_a_group_or_a_deprecated_command() -> None:
    assert not guide.parse_help("\nGroup\n    az webapp : Manage web apps.\n").known
    deprecated = HELP.replace(
        "Use --src-path for a local file.",
        "WARNING: This command has been deprecated and will be removed.",
    )
    assert guide.parse_help(deprecated).deprecated


def command(text: str, line: int = 1) -> Any:
    parsed = guide.parse_command(line, text)
    assert parsed is not None
    return parsed


def test_problems_name_each_option_the_help_lacks() -> None:
    help_ = guide.parse_help(HELP)
    ok = command("az webapp deploy -g rg -n app --src-path a.zip --type=zip -o none")
    assert guide.problems(ok, help_) == []
    wrong = command("az webapp deploy --name app --src app.zip --tag x", line=7)
    assert guide.problems(wrong, help_) == [
        "line 7: az webapp deploy: --src is not an option of this command",
        "line 7: az webapp deploy: --tag is deprecated",
    ]
    unknown = guide.Help(known=False, error="ERROR: 'webap' is misspelled")
    assert guide.problems(command("az webap deploy --name x"), unknown) == [
        "line 1: az webap deploy: unknown to az: ERROR: 'webap' is misspelled"
    ]
    old = guide.Help(known=True, options=frozenset({"--name"}), deprecated=True)
    assert guide.problems(command("az webapp up --name x"), old) == [
        "line 1: az webapp up: deprecated"
    ]


def test_help_is_asked_once_per_command_path() -> None:
    asked: list[tuple[str, ...]] = []

    def get_help(path: tuple[str, ...]) -> Any:
        asked.append(path)
        return guide.parse_help(HELP)

    commands = [
        command("az webapp deploy --name a"),
        command("az webapp deploy --name b --nope 1"),
    ]
    assert guide.check(commands, get_help) == [
        "line 1: az webapp deploy: --nope is not an option of this command"
    ]
    assert asked == [("webapp", "deploy")]


def test_the_script_end_to_end_with_a_made_up_az(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "az"
    fake.write_text(
        "#!" + sys.executable + "\n"
        "import sys\n"
        "words = sys.argv[1:]\n"
        "if words[:1] == ['version']:\n"
        "    print('2.99.0')\n"
        "elif words == ['group', 'create', '--help']:\n"
        "    print('\\nCommand\\n    az group create : Create.\\n\\nArguments\\n'\n"
        "          '    --name -n : Name.\\n    --location -l : Where.\\n')\n"
        "else:\n"
        "    print(\"ERROR: 'nope' is misspelled\", file=sys.stderr)\n"
        "    sys.exit(2)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    page = tmp_path / "guide.md"
    page.write_text("```sh\naz group create --name rg --location x\n```\n")
    assert guide.main(["--az", str(fake), "--guide", str(page)]) == 0
    out = capsys.readouterr().out
    assert "1 az commands; azure-cli 2.99.0" in out
    assert "line 2: az group create --name --location" in out

    page.write_text("```sh\naz group create --nam rg\naz nope list\n```\n")
    assert guide.main(["--az", str(fake), "--guide", str(page)]) == 1
    out = capsys.readouterr().out
    assert "line 2: az group create: --nam is not an option" in out
    assert "line 3: az nope list: unknown to az: ERROR: 'nope' is misspelled" in out


@pytest.fixture(scope="module")
def real_commands() -> list[Any]:
    return guide.extract_commands(guide.GUIDE.read_text(encoding="utf-8"))


def find(commands: list[Any], path: str) -> list[Any]:
    return [c for c in commands if c.path == tuple(path.split())]


def test_the_guide_creates_the_database_with_name(real_commands: list[Any]) -> None:
    creates = find(real_commands, "postgres flexible-server db create")
    assert creates
    for create in creates:
        assert "--name" in create.options
        assert "--server-name" in create.options
        # Removed in Azure CLI 2.86.
        assert "--database-name" not in create.options


def test_the_guide_does_not_use_webapp_up(real_commands: list[Any]) -> None:
    assert find(real_commands, "webapp up") == []
    assert find(real_commands, "webapp create")
    assert find(real_commands, "webapp deploy")


def test_the_guide_creates_managed_redis_for_channels_redis(
    real_commands: list[Any],
) -> None:
    [create] = find(real_commands, "redisenterprise create")
    assert "--clustering-policy EnterpriseCluster" in create.text
    assert "--access-keys-auth Enabled" in create.text
    entra_id, key = find(real_commands, "webapp config appsettings set")
    assert "REDIS_URL=$REDIS_URL" in key.text
    # Signing in as the app's identity: no key in the URL.
    assert "REDIS_AUTH=entra-id" in entra_id.text
    assert "REDIS_URL=rediss://$REDIS_HOST:10000/0" in entra_id.text
    text = guide.GUIDE.read_text(encoding="utf-8")
    assert 'REDIS_URL="rediss://:$(urlencode "$REDIS_KEY")@$REDIS_HOST:10000/0"' in text


def test_the_guide_health_checks_liveness(real_commands: list[Any]) -> None:
    [config] = find(real_commands, "webapp config set")
    assert '{"healthCheckPath": "/healthz"}' in config.text
    for probe in find(real_commands, "network application-gateway probe create"):
        assert "--path /healthz" in probe.text
