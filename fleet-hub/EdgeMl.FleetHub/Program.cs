using EdgeMl.FleetHub;
using EdgeMl.FleetHub.Apis;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Dashboard;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Metrics;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

// A typo in a setting's name would otherwise be ignored and the default used, a bad value found only after the start
// began: refused, naming it (exit 2: usage). --help and --version act only on a well-formed command line.
if (EdgeMl.FleetHub.Hosting.HubHosting.CommandLineProblem(args, out var flag) is { } usage)
{
    Console.Error.WriteLine($"edgeml-hub: {usage}");
    return 2;
}

if (flag is not null)
{
    Console.WriteLine(flag == "version" ? EdgeMl.FleetHub.Hosting.HubHosting.Version : EdgeMl.FleetHub.Hosting.HubHosting.Help());
    return 0;
}

var builder = WebApplication.CreateSlimBuilder(args);
// --config FILE (the package's /etc/edgeml/hub.json), --log-format text|json, systemd (Type=notify, watchdog).
if (EdgeMl.FleetHub.Hosting.HubHosting.UseHubHosting(builder, args) is { } hostingProblem)
{
    Console.Error.WriteLine($"edgeml-hub: {hostingProblem}");
    return 1;
}

// HTTPS for the API from configuration (--Kestrel:Certificates:Default:Path/KeyPath with an https:// --urls): docs/security.md.
builder.WebHost.UseKestrelHttpsConfiguration();
var settings = new HubSettings();
if (HubSettings.ValuesProblem(builder.Configuration) is { } valueProblem)
{
    // A value from the --config file its setting can never take (the command line's were checked above): one line, exit 1.
    Console.Error.WriteLine($"edgeml-hub: {valueProblem}");
    return 1;
}

try
{
    builder.Configuration.Bind(settings);
}
catch (InvalidOperationException e)
{
    // "Failed to convert configuration value 'abc' at 'MetricsPort' to type 'System.Int32'": the setting a person got
    // wrong, in one line (the binder's message names the key and the value).
    Console.Error.WriteLine($"edgeml-hub: configuration error: {e.Message}");
    return 1;
}

builder.Services.AddSingleton(settings);
if (settings.Problem(builder.Configuration) is { } problem)
{
    // A setting a person got wrong: one line and exit 1, before anything starts (systemd shows the line).
    Console.Error.WriteLine($"edgeml-hub: {problem}");
    return 1;
}

// One upload limit for Kestrel and the registry (a push over it: 413 with the limit named, from ApiErrors).
// URL and header limits: Kestrel's a little above the documented ones, which RequestLimits answers with a JSON error.
builder.WebHost.ConfigureKestrel(k =>
{
    k.Limits.MaxRequestBodySize = (long)settings.MaxPackageMb << 20;
    RequestLimits.Raise(k.Limits);
});
builder.Services.AddSingleton(TimeProvider.System);
// Every JSON body an endpoint binds: a key given twice ({"id":"a","id":"b"}) is refused (400 naming it, ApiErrors) rather
// than the last one silently winning; a client that means one value says it once.
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.AllowDuplicateProperties = false);
// A body that does not bind reaches ApiErrors as an exception (in every environment, not only Development), so the 400 says
// what did not fit and where instead of a generic line.
builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
IHubStore store;
try
{
    Directory.CreateDirectory(settings.Data); // the operator token and local files live there with either store
    store = settings.Store.Length > 0 ? PostgresHubStore.OpenWaiting(settings.Store, settings.RetentionDays, TimeSpan.FromSeconds(settings.StoreWaitSeconds), Console.Error)
                                      : new LiteDbHubStore(settings.Data);
}
catch (Exception e) when (e is Npgsql.NpgsqlException or IOException or UnauthorizedAccessException or InvalidOperationException or LiteDB.LiteException
                              or System.Net.Sockets.SocketException or TimeoutException)
{
    // A server that cannot be reached, a password it refuses, a data directory we cannot write: one line, exit 1.
    var waited = e is Npgsql.NpgsqlException { IsTransient: true } && settings.StoreWaitSeconds > 0 ? $" (waited {settings.StoreWaitSeconds:0} s, --StoreWaitSeconds)" : "";
    Console.Error.WriteLine($"edgeml-hub: cannot open the store ({(settings.Store.Length > 0 && e is not (IOException or UnauthorizedAccessException) ? "--Store" : $"--Data {settings.Data}")}){waited}: {e.Message}");
    return 1;
}

builder.Services.AddSingleton(store);
builder.Services.AddHostedService<EdgeMl.FleetHub.Retention.RecordRetention>();
builder.Services.AddSingleton<TelemetryIngest>();
builder.Services.AddSingleton<BrokerSessionTakeovers>();
builder.Services.AddSingleton<EdgeMl.FleetHub.Drift.RegistryBaselines>();
builder.Services.AddSingleton<EdgeMl.FleetHub.Drift.DriftAlerts>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<EdgeMl.FleetHub.Drift.DriftAlerts>()); // on the replica leading drift-alerts
builder.Services.AddSingleton<EdgeMl.FleetHub.Events.HubEvents>();
builder.Services.AddSingleton<EdgeMl.FleetHub.Alerts.FleetAlerts>();
builder.Services.AddHostedService<EdgeMl.FleetHub.Alerts.OfflineAlerts>();
if (settings.Broker.Length > 0)
{
    builder.Services.AddSingleton<ExternalBrokerClient>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<ExternalBrokerClient>());
    builder.Services.AddSingleton<IHubPublisher>(sp => sp.GetRequiredService<ExternalBrokerClient>());
    builder.Services.AddSingleton<IDeviceConnections>(sp => sp.GetRequiredService<ExternalBrokerClient>()); // --BrokerDynsec: logins follow the hub
}
else
{
    builder.Services.AddSingleton<EmbeddedBroker>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
    builder.Services.AddSingleton<IDeviceConnections>(sp => sp.GetRequiredService<EmbeddedBroker>());
    builder.Services.AddSingleton<IHubPublisher>(sp => sp.GetRequiredService<EmbeddedBroker>());
}

builder.Services.AddSingleton<EdgeMl.FleetHub.Rollouts.RolloutEngine>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<EdgeMl.FleetHub.Rollouts.RolloutEngine>());
builder.AddHubMetrics(settings); // GET /metrics (Prometheus), docs/metrics.md

var app = builder.Build();
app.UseRequestLimits(settings.MetricsPort);
app.UseApiErrors();
// Only a model push may send a big body (--MaxPackageMb, Kestrel's limit above); every other request — JSON bodies of
// sign-in, enrollment, tokens, rollouts, most of them reachable before any login — is capped at MaxJsonBodyBytes, so an
// anonymous client cannot make the hub buffer a gigabyte (413, as ApiErrors answers it).
app.Use((http, next) =>
{
    var isPush = HttpMethods.IsPost(http.Request.Method) && http.Request.Path.Equals("/api/models", StringComparison.OrdinalIgnoreCase);
    if (!isPush && http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
    {
        limit.MaxRequestBodySize = HubSettings.MaxJsonBodyBytes;
    }

    return next(http);
});
app.UseQueryParameterCheck(); // a query parameter an /api endpoint does not take is a 400 naming it, never ignored
app.MapHubMetrics(settings);
app.UseDashboard();
var driftAlerts = app.Services.GetRequiredService<EdgeMl.FleetHub.Drift.DriftAlerts>();
var ingest = app.Services.GetRequiredService<TelemetryIngest>();
ingest.DriftStored = driftAlerts.Stored; // the leader judges them (DriftAlerts.Pass)
var hubEvents = app.Services.GetRequiredService<EdgeMl.FleetHub.Events.HubEvents>();
var fleetAlerts = app.Services.GetRequiredService<EdgeMl.FleetHub.Alerts.FleetAlerts>();
ingest.PresenceStored = hubEvents.Presence;
ingest.RecordsStored = (device, records) =>
{
    fleetAlerts.FromDeviceRecords(device, records);
    foreach (var h in records.Where(r => r.Class == "health")) hubEvents.Health(device, DateTimeOffset.FromUnixTimeMilliseconds(h.At));
};
ApiAuth.Bootstrap(app.Services.GetRequiredService<IHubStore>(), settings, TimeProvider.System, app.Logger);
app.MapDevicesApi();
app.MapTokensApi();
app.MapDriftApi();
app.MapModelsApi();
app.MapRolloutsApi();
app.MapFleetApi();
app.MapSessionApi();
// Taken before Run: Run disposes the host's services when it returns (reading them after it threw ObjectDisposedException,
// so every Ctrl-C / SIGTERM stop ended in an unhandled exception, exit 134).
var backgroundServices = app.Services.GetServices<IHostedService>().OfType<BackgroundService>().ToList();
try
{
    app.Run();
}
catch (Exception e) when (StartFailure(e) is { } why)
{
    // Ports in use, a certificate that cannot be read, an address that is not one: one line, exit 1.
    Console.Error.WriteLine($"edgeml-hub: cannot start: {why}");
    return 1;
}

// A background service that died stops the host (HostOptions.BackgroundServiceExceptionBehavior.StopHost, logged with its
// exception): the exit is then 1 with its name and reason, so a supervisor sees a failure, not a clean stop.
foreach (var service in backgroundServices)
{
    if (service.ExecuteTask is { IsFaulted: true } task)
    {
        Console.Error.WriteLine($"edgeml-hub: stopped: {service.GetType().Name} failed: {task.Exception?.GetBaseException().Message}");
        return 1;
    }
}

return 0;

// What stopped the start, in one line, for the failures a setting or the machine causes (the host wraps the ones of
// hosted services, such as the embedded broker's port being in use, in an AggregateException); null for the rest.
static string? StartFailure(Exception e) => e switch
{
    AggregateException { InnerExceptions.Count: > 0 } a => StartFailure(a.InnerExceptions[0]),
    IOException or System.Net.Sockets.SocketException or InvalidOperationException or System.Security.Cryptography.CryptographicException
        or FormatException or ArgumentException => e.InnerException is System.Net.Sockets.SocketException s ? $"{e.Message} ({s.Message})" : e.Message,
    _ => null,
};

public partial class Program;
