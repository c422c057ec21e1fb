// OpenAPI at /docs (UI) and /docs/json, generated from the routes' TypeBox schemas.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';

export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'MPO control plane',
          description:
            'Launch hyperparameter sweeps of multilingual safety alignment (MPO and baselines), follow their trials and curves, and watch the queues.',
          version: '0.1.0',
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        security: [{ bearer: [] }],
        tags: [
          { name: 'runs', description: 'Sweeps and their trials' },
          { name: 'queues', description: 'BullMQ queues and worker agents' },
          { name: 'tokens', description: 'API tokens (admin)' },
          { name: 'ops', description: 'Health, readiness and metrics' },
        ],
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'docs' },
);
