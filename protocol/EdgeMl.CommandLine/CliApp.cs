using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace EdgeMl.CommandLine;

/// <summary>
/// Runs a System.CommandLine tree the same way in every EdgeMl program. Exit codes: 0 done, 1 refused or failed
/// (one line naming what), 2 usage (one line: the first parse error and where to get help), 130 interrupted.
/// No exception a user can cause reaches a stack trace: each ends as one line on stderr.
/// </summary>
public static class CliApp
{
    /// <summary>Exit code of a command that did its work.</summary>
    public const int Ok = 0;

    /// <summary>Exit code of a command that was refused or failed (the reason is on stderr).</summary>
    public const int Failed = 1;

    /// <summary>Exit code of a command line that is wrong (unknown command or option, missing or malformed value).</summary>
    public const int Usage = 2;

    /// <summary>Exit code after Ctrl-C or SIGTERM stopped a command (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;

    /// <summary>
    /// Parses <paramref name="args"/> against <paramref name="root"/> and invokes the chosen command's action.
    /// <paramref name="userError"/> says which exceptions are the user's or the environment's (a missing file, a hub that
    /// said no): their message is printed as is with exit 1. Anything else is still one line ("unexpected …"), exit 1.
    /// </summary>
    public static async Task<int> RunAsync(
        RootCommand root, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, Func<Exception, bool> userError,
        bool handlesSignals = false, CancellationToken ct = default)
    {
        // A program that handles Ctrl-C and SIGTERM itself (handlesSignals: it cancels ct and bounds its own stop) turns off
        // System.CommandLine's handling, which would end the process 2 s after the signal with exit 130/143 — cutting
        // short a stop that delivers its last records, and making systemd count a clean stop as a failure.
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        if (handlesSignals) config.ProcessTerminationTimeout = null;
        if (args.Count == 0)
        {
            // No command at all: the overview, as a usage error.
            await root.Parse(["--help"]).InvokeAsync(config, ct).ConfigureAwait(false);
            return Usage;
        }

        // Response files (@FILE) are off: an argument such as a device id or a path may start with '@'.
        ParseResult result;
        try
        {
            result = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            await stderr.WriteLineAsync($"error: the command line cannot be read: {OneLine(e.Message)} (see '{root.HelpName ?? root.Name} --help')").ConfigureAwait(false);
            return Usage;
        }

        if (result.Action is ParseErrorAction || (result.Errors.Count > 0 && result.Action is not HelpAction))
        {
            await stderr.WriteLineAsync(UsageLine(FirstError(result), result.CommandResult.Command, root)).ConfigureAwait(false);
            return Usage;
        }

        try
        {
            return await result.InvokeAsync(config, ct).ConfigureAwait(false);
        }
        catch (UsageException e)
        {
            await stderr.WriteLineAsync(UsageLine(e.Message, result.CommandResult.Command, root)).ConfigureAwait(false);
            return Usage;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return Interrupted;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var message = OneLine(e.Message);
            await stderr.WriteLineAsync(userError(e) || e is CliException ? $"error: {message}" : $"error: unexpected {e.GetType().Name}: {message}").ConfigureAwait(false);
            return Failed;
        }
    }

    /// <summary>The error to show: an unknown word first (it explains the rest), then the first one, named by its option.</summary>
    private static string FirstError(ParseResult result)
    {
        if (result.Errors.Count == 0) return "incomplete command";
        var error = result.Errors.FirstOrDefault(e => result.UnmatchedTokens.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal))) ?? result.Errors[0];
        var option = error.SymbolResult switch
        {
            OptionResult o => o.Option.Name,
            ArgumentResult { Parent: OptionResult o } => o.Option.Name,
            _ => null,
        };
        return option is null || error.Message.Contains(option, StringComparison.Ordinal) ? error.Message : $"{option}: {error.Message}";
    }

    /// <summary>The one line of a usage error: what is wrong, and the help command of the command it concerns.</summary>
    public static string UsageLine(string message, Command command, RootCommand root)
    {
        var path = new List<string>();
        for (Command? c = command; c is not null && c != root; c = c.Parents.OfType<Command>().FirstOrDefault()) path.Insert(0, c.Name);
        path.Insert(0, root.HelpName ?? root.Name);
        return $"error: {OneLine(message)} (see '{string.Join(' ', path)} --help')";
    }

    /// <summary>A message on one line: line breaks and tabs become spaces.</summary>
    public static string OneLine(string text) => string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>
    /// <c>completion bash|zsh</c>: prints a script that completes commands, options and values through the program's
    /// own <c>[suggest]</c> directive (System.CommandLine). <c>source &lt;(PROGRAM completion bash)</c> in ~/.bashrc;
    /// zsh: <c>autoload -U bashcompinit &amp;&amp; bashcompinit</c> first.
    /// </summary>
    public static Command CompletionCommand(string program)
    {
        var shell = new Argument<string>("SHELL") { Description = "bash or zsh (zsh through bashcompinit)", DefaultValueFactory = _ => "bash" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", $"Print a shell completion script: source <({program} completion bash)") { shell };
        command.SetAction(parse =>
        {
            var fn = "_" + new string(program.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());
            parse.InvocationConfiguration.Output.Write($$"""
                # {{program}} completion ({{parse.GetValue(shell)}}); generated by `{{program}} completion`
                {{fn}}() {
                  local line="${COMP_LINE#* }"
                  local pos=$((COMP_POINT - ${#COMP_LINE} + ${#line}))
                  local IFS=$'\n'
                  COMPREPLY=( $(compgen -W "$({{program}} "[suggest:$pos]" "$line" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}") )
                }
                complete -o default -F {{fn}} {{program}}

                """);
            return Ok;
        });
        return command;
    }
}

/// <summary>The command line is wrong in a way only the command can see (exit 2, one line).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The command was refused or failed for a reason the user must see as is (exit 1, one line).</summary>
public class CliException(string message, Exception? inner = null) : Exception(message, inner);
