using System.CommandLine;
using System.CommandLine.Completions;
using System.CommandLine.Help;
using System.Text;
using EdgeMl.Agent.Cli;
using EdgeMl.Cli;
using EdgeMl.CommandLine;
using EdgeMl.FleetSim;
using EdgeMl.TestUtilities;

namespace EdgeMl.FleetHub.Tests;

/// <summary>
/// Every command of the three programs (<c>edgeml</c>, <c>edgeml-agent</c>, <c>edgeml-fleetsim</c>), walked from their
/// System.CommandLine trees and run in process through <see cref="CliApp"/>: <c>--help</c> works, a missing required
/// argument or option and a malformed value are one line and exit 2, and docs/cli.md is what <c>--help</c> prints.
/// </summary>
public sealed class CommandLineTests
{
    public static TheoryData<string, string> Commands()
    {
        var data = new TheoryData<string, string>();
        foreach (var (program, root) in Roots())
        {
            foreach (var path in Leaves(root)) data.Add(program, path);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task Help_describes_every_command_and_option(string program, string path)
    {
        var (code, stdout, stderr) = await RunAsync(program, [.. Words(path), "--help"]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"{program} {path}", stdout, StringComparison.Ordinal);
        var command = Find(program, path);
        Assert.False(string.IsNullOrWhiteSpace(command.Description), $"{program} {path} has no description");
        foreach (var option in command.Options.Where(o => o is not HelpOption))
        {
            Assert.False(string.IsNullOrWhiteSpace(option.Description), $"{program} {path} {option.Name} has no description");
            Assert.Contains(option.Name, stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task A_missing_required_argument_or_option_is_one_line_and_exit_2(string program, string path)
    {
        var command = Find(program, path);
        var required = command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0).Select(a => a.Name)
            .Concat(command.Options.Where(o => o.Required).Select(o => o.Name)).ToList();
        if (required.Count == 0 && program == "edgeml-agent" && path == "run")
        {
            required.Add("--config"); // run needs --config, or --model and --sensor: checked by the command itself
        }

        if (required.Count == 0) return; // nothing is required: covered by the help and malformed-value tests
        var (code, stdout, stderr) = await RunAsync(program, Words(path));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(Lines(stderr));
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains(required.Select(r => r.TrimStart('-')), r => line.Contains(r, StringComparison.Ordinal));
        Assert.EndsWith($"(see '{program} {path} --help')", line, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task A_malformed_value_is_one_line_naming_the_option_and_exit_2(string program, string path)
    {
        var command = Find(program, path);
        var checkedOptions = command.Options.Where(o => o is not HelpOption && o.ValueType != typeof(bool) && o.ValueType != typeof(string[])
                                                        && !CliOptions.IsFreeText(o)).ToList();
        foreach (var option in checkedOptions)
        {
            var args = new List<string>(Words(path));
            args.AddRange(ValidRequired(command, except: option));
            args.Add(option.Name);
            args.Add("1e999x%@");
            var (code, stdout, stderr) = await RunAsync(program, [.. args]);
            Assert.True(code == 2, $"{string.Join(' ', args)} → {code}: {stderr}");
            Assert.Equal("", stdout);
            var line = Assert.Single(Lines(stderr));
            Assert.Contains(option.Name, line, StringComparison.Ordinal);
            Assert.Contains("1e999x%@", line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Unknown_commands_and_options_are_one_line_and_exit_2()
    {
        foreach (var (program, args) in new (string, string[])[]
                 {
                     ("edgeml", ["devcies", "list"]), ("edgeml", ["devices", "list", "--grup", "x"]), ("edgeml", ["devices", "show", "a", "b"]),
                     ("edgeml-agent", ["stauts"]), ("edgeml-agent", ["status", "--data", "d", "--jsn"]), ("edgeml-agent", ["run", "--model", "m", "--sensor", "s", "notakey"]),
                     ("edgeml-fleetsim", ["runn"]),
                 })
        {
            var (code, _, stderr) = await RunAsync(program, args);
            Assert.True(code == 2, $"{program} {string.Join(' ', args)} → {code}: {stderr}");
            var line = Assert.Single(Lines(stderr));
            Assert.Matches("(?i)unrecognized command or argument '", line);
        }
    }

    [Fact]
    public async Task A_key_name_that_is_empty_or_a_path_is_refused_before_any_file_is_written()
    {
        using var dir = new TempDirectory();
        foreach (var name in new[] { "", "../escape", "a/b", ".hidden", "-x", new string('k', 65), "tab\tname" })
        {
            var (code, stdout, stderr) = await RunAsync("edgeml", ["keys", "create", name, "--dir", dir.Path]);
            Assert.True(code == 2, $"keys create '{name}' → {code}: {stderr}");
            Assert.Equal("", stdout);
            Assert.Contains("key name", Assert.Single(Lines(stderr)), StringComparison.Ordinal);
        }

        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
        Assert.Empty(Directory.EnumerateFiles(Path.GetDirectoryName(dir.Path)!, "escape.*"));
    }

    [Fact]
    public async Task Version_and_completion_work_for_every_program()
    {
        foreach (var (program, _) in Roots())
        {
            var (code, stdout, _) = await RunAsync(program, ["--version"]);
            Assert.Equal(0, code);
            Assert.Matches(@"^\d+\.\d+\.\d+", stdout);

            (code, stdout, _) = await RunAsync(program, ["completion", "bash"]);
            Assert.Equal(0, code);
            Assert.Contains($"complete -o default -F", stdout, StringComparison.Ordinal);
            Assert.Contains($"{program} \"[suggest:$pos]\"", stdout, StringComparison.Ordinal);
        }

        // What the completion script asks for: the commands and options that fit the word being typed.
        var (c, o, _) = await RunAsync("edgeml", ["[suggest:9]", "devices s"]);
        Assert.Equal(0, c);
        Assert.Contains("show", Lines(o));
        (c, o, _) = await RunAsync("edgeml", ["[suggest:25]", "devices list --status off"]);
        Assert.Equal(0, c);
        Assert.Contains("offline", Lines(o));
    }

    /// <summary>
    /// docs/cli.md lists every command as <c>--help</c> prints it. Regenerate it with
    /// <c>EDGEML_WRITE_DOCS=1 ./build.sh docs</c> (or this test with that variable set) after changing a command.
    /// </summary>
    [Fact]
    public async Task Docs_list_the_commands_as_help_prints_them()
    {
        var docs = Path.Combine(RepoRoot(), "docs", "cli.md");
        var generated = await ReferenceAsync();
        if (Environment.GetEnvironmentVariable("EDGEML_WRITE_DOCS") == "1") File.WriteAllText(docs, generated);
        Assert.True(File.Exists(docs), "docs/cli.md is missing: run EDGEML_WRITE_DOCS=1 ./build.sh docs");
        Assert.True(File.ReadAllText(docs) == generated, "docs/cli.md differs from what --help prints: run EDGEML_WRITE_DOCS=1 ./build.sh docs");
    }

    /// <summary>Every command line the README and docs/ show (in code blocks, without placeholders) parses as it is written.</summary>
    [Fact]
    public void Commands_in_the_readme_and_docs_parse()
    {
        var root = RepoRoot();
        var checkedLines = 0;
        foreach (var file in Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Append(Path.Combine(root, "README.md")).Where(f => !f.EndsWith("cli.md", StringComparison.Ordinal)))
        {
            var lines = File.ReadAllLines(file);
            var inBlock = false;
            for (var i = 0; i < lines.Length; i++)
            {
                if (lines[i].TrimStart().StartsWith("```", StringComparison.Ordinal))
                {
                    inBlock = !inBlock;
                    continue;
                }

                var line = lines[i].Trim();
                while (inBlock && line.EndsWith('\\') && i + 1 < lines.Length) line = line[..^1] + " " + lines[++i].Trim();
                var m = System.Text.RegularExpressions.Regex.Match(line, @"^(?:\$ )?(?:\S*/)?(edgeml-agent|edgeml-fleetsim|edgeml)\s+(.*)$");
                if (!inBlock || !m.Success || line.IndexOfAny(['[', '…', '|', '<']) >= 0 || line.Contains("$(", StringComparison.Ordinal) || line.Contains(" — ", StringComparison.Ordinal)) continue;
                var words = ShellWords(m.Groups[2].Value);
                var parsed = Roots().Single(r => r.Program == m.Groups[1].Value).Root.Parse(words);
                Assert.True(parsed.Errors.Count == 0, $"{Path.GetFileName(file)}:{i + 1}: {line}\n  → {string.Join("; ", parsed.Errors.Select(e => e.Message))}");
                checkedLines++;
            }
        }

        Assert.True(checkedLines >= 40, $"only {checkedLines} command lines found in the docs");
    }

    /// <summary>Splits a shell command line into words: quotes group, <c>#</c> after a space starts a comment.</summary>
    private static List<string> ShellWords(string line)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        char quote = '\0';
        var inWord = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quote != '\0')
            {
                if (c == quote) quote = '\0';
                else word.Append(c);
            }
            else if (c is '\'' or '"')
            {
                quote = c;
                inWord = true;
            }
            else if (char.IsWhiteSpace(c))
            {
                if (inWord) words.Add(word.ToString());
                word.Clear();
                inWord = false;
            }
            else if (c == '#' && !inWord)
            {
                break;
            }
            else
            {
                word.Append(c);
                inWord = true;
            }
        }

        if (inWord) words.Add(word.ToString());
        return words;
    }

    private static async Task<string> ReferenceAsync()
    {
        var text = new StringBuilder();
        text.Append("""
            # Command-line reference

            Generated from the programs' own `--help` (System.CommandLine) by `EDGEML_WRITE_DOCS=1 ./build.sh docs`; a
            test fails when this page and `--help` differ. Every program answers `--help` on every command, `--version`, and
            `completion bash` (add `source <(edgeml completion bash)` to `~/.bashrc`; zsh: run `autoload -U bashcompinit && bashcompinit`
            first). Exit codes: 0 done, 1 refused or failed (one line on stderr saying why), 2 wrong command line (one line naming
            the option and what it expects), 130 stopped by Ctrl-C. Durations are written `200ms`, `90s`, `10m`, `24h`, `7d` (a bare
            number is seconds), sizes `64KiB`, `512MB` (a bare number is bytes), a hub `HOST[:PORT]` (port 8080) or
            `http(s)://HOST[:PORT]`, a model `NAME@VERSION` — the same everywhere, in the programs and the hub's API.

            """);
        foreach (var (program, root) in Roots())
        {
            text.Append("\n## ").Append(program).Append("\n\n");
            foreach (var command in All(root))
            {
                var path = PathOf(command, root);
                text.Append("### `").Append(path.Length == 0 ? program : $"{program} {path}").Append("`\n\n```text\n");
                ((HelpAction)root.Options.OfType<HelpOption>().Single().Action!).MaxWidth = 110; // the same page on every terminal
                var help = new StringWriter();
                var code = await CliApp.RunAsync(root, [.. Words(path), "--help"], help, TextWriter.Null, _ => false);
                Assert.Equal(0, code);
                text.AppendJoin('\n', help.ToString().ReplaceLineEndings("\n").Trim('\n').Split('\n').Select(l => l.TrimEnd())).Append("\n```\n\n");
            }
        }

        return text.ToString().TrimEnd('\n') + "\n";
    }

    private static async Task<(int Code, string Out, string Err)> RunAsync(string program, string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var root = Roots().Single(r => r.Program == program).Root;
        var code = await CliApp.RunAsync(root, args, stdout, stderr, _ => false);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static IEnumerable<(string Program, RootCommand Root)> Roots()
    {
        yield return ("edgeml", EdgeMlCli.BuildRoot(TextWriter.Null, TextWriter.Null));
        yield return ("edgeml-agent", AgentProgram.BuildRoot());
        yield return ("edgeml-fleetsim", FleetSimProgram.BuildRoot());
    }

    private static IEnumerable<Command> All(Command c) => new[] { c }.Concat(c.Subcommands.SelectMany(All));

    private static IEnumerable<string> Leaves(RootCommand root) => All(root).Where(c => c.Subcommands.Count == 0).Select(c => PathOf(c, root));

    private static string PathOf(Command command, RootCommand root)
    {
        var words = new List<string>();
        for (Command? c = command; c is not null && c != root; c = c.Parents.OfType<Command>().FirstOrDefault()) words.Insert(0, c.Name);
        return string.Join(' ', words);
    }

    private static Command Find(string program, string path)
    {
        Command c = Roots().Single(r => r.Program == program).Root;
        foreach (var w in Words(path)) c = c.Subcommands.Single(s => s.Name == w);
        return c;
    }

    private static string[] Words(string path) => path.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private static List<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    private static List<string> Choices(Option o) => o.GetCompletions(CompletionContext.Empty).Select(c => c.Label).ToList();

    /// <summary>Valid values for the command's required arguments and options, so that only the option under test is wrong.</summary>
    private static IEnumerable<string> ValidRequired(Command command, Option except)
    {
        foreach (var a in command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0))
        {
            yield return a.ValueType == typeof(EdgeMl.Protocol.Text.ModelRef) ? "model@1.0.0" : "x";
        }

        foreach (var o in command.Options.Where(o => o.Required && o != except))
        {
            yield return o.Name;
            yield return o.ValueType == typeof(long) ? "1" : o.ValueType == typeof(TimeSpan) ? "1m" : o.ValueType == typeof(Uri) ? "127.0.0.1"
                : o.Name == "--broker" ? "mqtt://127.0.0.1:1883" : Choices(o).FirstOrDefault() ?? "x";
        }
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EdgeMl.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException("EdgeMl.sln not found above " + AppContext.BaseDirectory);
    }
}
