using EdgeMl.FleetHub;
using EdgeMl.FleetHub.Apis;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Security;
using EdgeMl.FleetHub.Store;

var builder = WebApplication.CreateSlimBuilder(args);
var settings = new HubSettings();
builder.Configuration.Bind(settings);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<IHubStore>(_ => new LiteDbHubStore(settings.Data));
builder.Services.AddSingleton<TelemetryIngest>();
if (settings.Broker.Length > 0)
{
    builder.Services.AddHostedService<ExternalBrokerClient>();
    builder.Services.AddSingleton<IDeviceConnections, NoDeviceConnections>();
}
else
{
    builder.Services.AddSingleton<EmbeddedBroker>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
    builder.Services.AddSingleton<IDeviceConnections>(sp => sp.GetRequiredService<EmbeddedBroker>());
}

var app = builder.Build();
ApiAuth.Bootstrap(app.Services.GetRequiredService<IHubStore>(), settings, TimeProvider.System, app.Logger);
app.MapDevicesApi();
app.MapTokensApi();
app.Run();

public partial class Program;
